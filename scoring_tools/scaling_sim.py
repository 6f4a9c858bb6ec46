"""How a request rate turns into scoring pods and GPU nodes under this stack's KEDA rules.

    python -m scoring_tools.scaling_sim [--capacity 400] [--target 280] [--min 3] [--max 6]

Two views, both from the same rules as infra/autoscaling.py:
- steady state: for each request rate, the pods KEDA asks for, the GPU nodes
  the cluster autoscaler then runs, and how busy each pod is;
- a load step over time: KEDA polling every 15 s, +2 pods a minute up, a
  5-minute stabilisation and -1 pod a minute down, and a pod that needs a new
  GPU node ready only after `node_ready_s` (VM + driver + image + model load).

Per-pod capacity is a parameter: `make bench` measures it. The default of
400 images/s is an estimate for a T4 (NC4as_T4_v3): ResNet50 runs near 1000
images/s on the GPU, but JPEG decoding on the pod's 3 CPUs caps it first.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Scaling:
    capacity: float = 400.0  # images/s one pod sustains (measured by make bench)
    target: float = 280.0  # scaleRequestsPerReplica: ~70% of capacity
    min_pods: int = 3
    max_pods: int = 6
    gpus_per_node: int = 1  # NC4as_T4_v3
    min_nodes: int = 3  # gpuMinCount
    max_nodes: int = 6  # gpuMaxCount


def desired_pods(rate: float, s: Scaling) -> int:
    """KEDA's AverageValue rule: ceil(total / per-pod target), clamped to min..max."""
    return min(s.max_pods, max(s.min_pods, math.ceil(rate / s.target)))


def nodes_for(pods: int, s: Scaling) -> int:
    """The cluster autoscaler runs enough GPU nodes for every pod, within the pool's bounds."""
    return min(s.max_nodes, max(s.min_nodes, math.ceil(pods / s.gpus_per_node)))


def steady_state(rate: float, s: Scaling) -> dict:
    pods = desired_pods(rate, s)
    served = min(rate, pods * s.capacity)
    return {"rate": rate, "pods": pods, "nodes": nodes_for(pods, s),
            "busy": rate / (pods * s.capacity), "rejected": rate - served}


def simulate(load, s: Scaling, seconds: int, node_ready_s: int = 360, pod_ready_s: int = 90,
             node_idle_s: int = 600, step_s: int = 15) -> list[dict]:
    """Pods over time for `load(t)` requests/s. A pod that fits on a running node is ready
    after pod_ready_s (model load, warm-up); one that needs a new node after node_ready_s.
    The cluster autoscaler removes nodes left without a pod for node_idle_s (its default
    scale-down-unneeded-time is 10 minutes)."""
    ready, starting, nodes = s.min_pods, [], nodes_for(s.min_pods, s)
    last_up = last_down = -10**9
    surplus_since = None
    history, recent = [], []
    for t in range(0, seconds + 1, step_s):
        ready += sum(1 for at in starting if at <= t)
        starting = [at for at in starting if at > t]
        rate = load(t)
        want = desired_pods(rate, s)
        recent = [(at, w) for at, w in recent if at > t - 300] + [(t, want)]
        total = ready + len(starting)
        if want > total and t - last_up >= 60:
            for _ in range(min(2, want - total)):
                needs_node = ready + len(starting) + 1 > nodes * s.gpus_per_node
                if needs_node:
                    nodes = min(s.max_nodes, nodes + 1)
                starting.append(t + (node_ready_s if needs_node else pod_ready_s))
            last_up = t
        elif max(w for _, w in recent) < total and t - last_down >= 60 and ready > s.min_pods:
            ready -= 1  # preStop + drain: in-flight requests finish first
            last_down = t
        if nodes > nodes_for(ready + len(starting), s):
            surplus_since = t if surplus_since is None else surplus_since
            if t - surplus_since >= node_idle_s:
                nodes, surplus_since = nodes_for(ready + len(starting), s), None
        else:
            surplus_since = None
        capacity = ready * s.capacity
        history.append({"t": t, "rate": rate, "ready": ready, "starting": len(starting),
                        "nodes": nodes, "rejected": max(0.0, rate - capacity)})
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=float, default=Scaling.capacity)
    parser.add_argument("--target", type=float, default=Scaling.target)
    parser.add_argument("--min", type=int, default=Scaling.min_pods)
    parser.add_argument("--max", type=int, default=Scaling.max_pods)
    args = parser.parse_args()
    s = Scaling(capacity=args.capacity, target=args.target, min_pods=args.min,
                max_pods=args.max, min_nodes=args.min, max_nodes=args.max)
    print("| requests/s | pods | GPU nodes | each pod busy | rejected/s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for rate in (100, 500, 840, 1000, 1400, 1700, 2400, 3000):
        r = steady_state(rate, s)
        print(f"| {rate} | {r['pods']} | {r['nodes']} | {r['busy']:.0%} | {r['rejected']:.0f} |")
    print("\nstep from 500 to 1500 requests/s at t=60 s, back to 500 at t=900 s:")
    print("| t (s) | requests/s | pods ready | starting | GPU nodes | rejected/s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    load = lambda t: 1500.0 if 60 <= t < 900 else 500.0  # noqa: E731
    for row in simulate(load, s, seconds=1800):
        if row["t"] % 120 == 0:
            print(f"| {row['t']} | {row['rate']:.0f} | {row['ready']} | {row['starting']} | "
                  f"{row['nodes']} | {row['rejected']:.0f} |")


if __name__ == "__main__":
    main()
