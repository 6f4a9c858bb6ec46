"""``python -m bench``: see bench.cli."""
import signal
import sys

from bench.cli import main


def _stop(signum, frame):
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: the servers and the limit child stop too
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _stop)
sys.exit(main())
