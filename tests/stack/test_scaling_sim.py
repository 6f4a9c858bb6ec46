"""scoring_tools/scaling_sim.py: the worked example in docs/scaling.md follows the stack's scaling rules."""
import sys

import pytest

from scoring_tools import scaling_sim as sim
from stack_harness import REPO, stack_file_config

S = sim.Scaling(capacity=400, target=280, min_pods=3, max_pods=6)


@pytest.mark.parametrize("rate, pods", [(0, 3), (840, 3), (841, 4), (1400, 5), (1681, 6),
                                        (10_000, 6)])
def test_pods_are_ceil_rate_over_target_within_bounds(rate, pods):
    assert sim.desired_pods(rate, S) == pods
    assert sim.nodes_for(pods, S) == pods  # one T4 per NC4as_T4_v3 node


def test_beyond_max_the_excess_is_rejected_not_hidden():
    r = sim.steady_state(3000, S)
    assert (r["pods"], r["rejected"]) == (6, 3000 - 6 * 400) and r["busy"] > 1


def test_a_load_step_scales_up_then_back_to_min_and_releases_nodes():
    history = sim.simulate(lambda t: 1500.0 if 60 <= t < 900 else 500.0, S, seconds=1800)
    peak = max(h["ready"] for h in history)
    assert peak == sim.desired_pods(1500, S) == 6
    assert all(h["ready"] + h["starting"] <= S.max_pods for h in history)
    assert all(h["nodes"] * S.gpus_per_node >= h["ready"] for h in history)
    assert history[-1]["ready"] == S.min_pods and history[-1]["nodes"] == S.min_nodes
    # Until new GPU nodes are up, the extra load is turned away (503 + Retry-After).
    assert history[5]["rejected"] == 1500 - 3 * 400
    ups = [h["t"] for a, h in zip(history, history[1:]) if h["ready"] < a["ready"]]
    assert all(b - a >= 60 for a, b in zip(ups, ups[1:]))  # one pod a minute down


def test_the_examples_bounds_are_prods():
    prod = stack_file_config("prod")
    assert (prod["minReplicas"], prod["maxReplicas"]) == (S.min_pods, S.max_pods)
    assert (prod["gpuMinCount"], prod["gpuMaxCount"]) == (S.min_nodes, S.max_nodes)


def test_docs_scaling_md_shows_what_the_script_prints(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["scaling_sim.py"])
    sim.main()
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    doc = (REPO / "docs" / "scaling.md").read_text()
    assert len(printed) > 20
    assert [line for line in printed if line not in doc] == []
