"""CPU-seconds of a whole process tree, read from /proc.

A gunicorn server is a master and its workers (each with many TensorFlow threads); its cost per
request is the CPU the entire tree burns, sampled before and after a load run. Each process's
utime+stime covers all its threads; cutime+cstime keeps the CPU of a worker that died and was
reaped between two samples, so a restart cannot hide cost.
"""
import os
import time
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and ')')."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited while we were scanning
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_seconds(root_pid: int) -> float:
    """User+system CPU-seconds of ``root_pid`` and all its descendants, reaped ones included."""
    parents, ticks = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            pid = int(entry.name)
            # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
            parents[pid] = int(fields[1])
            ticks[pid] = sum(int(value) for value in fields[11:15])
    if root_pid not in ticks:
        raise ProcessLookupError(f"process {root_pid} is not running")
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(ticks[pid] for pid in tree) / _TICKS_PER_SECOND


def wait_idle(root_pid: int, interval: float = 0.25, busy_share: float = 0.05, timeout: float = 120,
              read=tree_cpu_seconds, sleep=time.sleep) -> float:
    """Wait until the tree burns less than ``busy_share`` of one core over ``interval``; return
    the seconds waited (at most ``timeout``, roughly).

    A load run's client leaves with requests still in flight, and the server goes on computing
    them for nobody: with ResNet50 on a CPU, up to 32 images, seconds of work. Measuring the next
    run before that work is done would charge it both the time and the CPU.
    """
    waited, before = 0.0, read(root_pid)
    while waited < timeout:
        sleep(interval)
        waited += interval
        now = read(root_pid)
        if now - before < busy_share * interval:
            break
        before = now
    return waited
