"""Tables for the node's settings (set_config), the memory cap on top of sizing, and model-folder problems."""

from __future__ import annotations

import pytest

from potluck.core.node.config import NodeConfig, apply_values, network_key, restart_needed
from potluck.core.node.plan import BlockPlan, NodeSetupError, apply_memory_cap, plan_from_sizing, range_words
from potluck.core.node.serving import model_problem

GUI_VALUES = {"mode": "create", "model": "org/tiny", "swarm_name": "Friday night", "pc_name": "Sam's desktop",
              "memory_cap_bytes": 8 * 2**30, "log_dir": "/tmp/logs"}


def test_the_apps_values_apply():
    applied = apply_values(NodeConfig(), GUI_VALUES)
    assert applied.problems == () and applied.unknown == ()
    c = applied.config
    assert (c.mode, c.model, c.swarm_name, c.pc_name, c.memory_cap_bytes, c.log_dir) == \
           ("create", "org/tiny", "Friday night", "Sam's desktop", 8 * 2**30, "/tmp/logs")


@pytest.mark.parametrize("values, field, value", [
    ({"memory_cap_bytes": 8e9}, "memory_cap_bytes", 8_000_000_000),  # JSON writers send big ints as floats
    ({"initial_peers": ["/ip4/1.2.3.4/tcp/5/p2p/x "]}, "initial_peers", ("/ip4/1.2.3.4/tcp/5/p2p/x",)),
    ({"num_blocks": 3}, "num_blocks", 3),
    ({"num_blocks": None}, "num_blocks", None),
    ({"port": 31337}, "port", 31337),
    ({"model": "  /models/x  "}, "model", "/models/x"),
    ({"mode": "join"}, "mode", "join"),
])
def test_values(values, field, value):
    applied = apply_values(NodeConfig(), values)
    assert applied.problems == ()
    assert getattr(applied.config, field) == value


@pytest.mark.parametrize("values, problem", [
    ({"memory_cap_bytes": -1}, "memory_cap_bytes must be >= 0"),
    ({"memory_cap_bytes": 1.5}, "memory_cap_bytes must be >= 0"),
    ({"memory_cap_bytes": True}, "memory_cap_bytes must be >= 0"),
    ({"mode": "party"}, "mode must be one of create, join, plain, got 'party'"),
    ({"pc_name": "x" * 65}, "pc_name must be text of at most 64 characters"),
    ({"initial_peers": "/ip4/1.2.3.4"}, "initial_peers must be a list of multiaddrs"),
    ({"port": 70000}, "port must be in 0..65535"),
    ({"num_blocks": 0}, "num_blocks must be at least 1 (or null)"),
    ({"model": 7}, "model must be text of at most 4096 characters"),
])
def test_bad_values_are_reported_and_skipped(values, problem):
    before = NodeConfig(memory_cap_bytes=5, mode="create", pc_name="Sam")
    applied = apply_values(before, {**values, "swarm_name": "ok"})
    assert applied.problems == (problem,)
    assert applied.config == NodeConfig(memory_cap_bytes=5, mode="create", pc_name="Sam", swarm_name="ok")


def test_unknown_names_are_listed_not_refused():
    applied = apply_values(NodeConfig(), {"theme": "dark", "model": "org/m", "autopilot": 1})
    assert applied.unknown == ("autopilot", "theme") and applied.problems == ()
    assert applied.config.model == "org/m"


def test_what_needs_a_restart_and_a_new_network():
    old = NodeConfig(model="a", log_dir="/x")
    assert restart_needed(old, NodeConfig(model="a", log_dir="/y")) == []
    assert restart_needed(old, NodeConfig(model="b", log_dir="/x", memory_cap_bytes=1)) == ["model", "memory_cap_bytes"]
    assert network_key(old) == network_key(NodeConfig(model="b"))
    assert network_key(old) != network_key(NodeConfig(initial_peers=("/ip4/1.2.3.4/tcp/1/p2p/x",)))


GIB = 2**30


@pytest.mark.parametrize("fit, per_block, cap, blocks, words", [
    (10, GIB, 0, 10, ""),  # no cap
    (10, GIB, 20 * GIB, 10, ""),  # a cap above what fits changes nothing
    (10, GIB, 10 * GIB, 10, ""),
    (10, GIB, 4 * GIB + 5, 4, "; your memory limit of 4.0 GiB allows 4 blocks → hosting 4 blocks"),
    (10, 2 * GIB, 3 * GIB, 1, "; your memory limit of 3.0 GiB allows 1 block → hosting 1 block"),
])
def test_memory_cap(fit, per_block, cap, blocks, words):
    assert apply_memory_cap(fit, per_block, cap) == (blocks, words)


def test_a_cap_below_one_block_cannot_serve():
    with pytest.raises(NodeSetupError, match=r"memory limit of 0.50 GiB is less than one block needs \(1.0 GiB\)"):
        apply_memory_cap(10, GIB, GIB // 2)


def test_plan_from_sizing_keeps_the_engines_words_and_numbers():
    plan = plan_from_sizing(6, GIB, "8.0 GiB free … → 6 blocks fit", 2 * GIB, 8 * GIB, 6 * GIB)
    assert plan.num_blocks == 2
    assert plan.explanation == ("8.0 GiB free … → 6 blocks fit; your memory limit of 2.0 GiB allows 2 blocks "
                                "→ hosting 2 blocks")
    assert plan.numbers == {"free_memory_bytes": 8 * GIB, "usable_bytes": 6 * GIB, "per_block_bytes": GIB,
                            "memory_cap_bytes": 2 * GIB}
    assert "memory_cap_bytes" not in plan_from_sizing(6, GIB, "words", 0, 8 * GIB, 6 * GIB).numbers  # 0: no cap


@pytest.mark.parametrize("start, end, total, others, tail", [
    (0, 4, 4, False, "This PC hosts the whole model (4 blocks)."),
    (12, 24, 80, True, "This PC hosts blocks 12–23 of 80, where the swarm had the fewest servers."),
    (0, 1, 80, False, "This PC hosts block 0 of 80; friends who join will host the rest."),
])
def test_range_words(start, end, total, others, tail):
    assert range_words(BlockPlan(end - start, "Because"), start, end, total, others) == f"Because. {tail}"


def test_range_words_do_not_repeat_the_engine():
    plan = BlockPlan(4, "… → 90 blocks fit, but the model has 4 blocks → hosting all of them")
    assert range_words(plan, 0, 4, 4, False) == plan.explanation + "."


@pytest.mark.parametrize("model, problem", [
    ("", "No model is set. Choose one in Settings."),
    ("/no/such/folder", ("The model /no/such/folder does not exist. Choose the model's folder or .gguf file again "
                         "in Settings.")),
    ("~/no-such-model-folder", "The model ~/no-such-model-folder does not exist."),
    ("/no/such/model.gguf", "The model /no/such/model.gguf does not exist."),
    ("org/name", ""),  # a Hugging Face id: downloading is tried
    ("gpt2", ""),
])
def test_model_problem(model, problem, tmp_path):
    got = model_problem(model)
    assert got.startswith(problem) if problem else got == ""
    assert model_problem(str(tmp_path)) == ""  # an existing folder: open_model says what is wrong with it, if anything
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert model_problem(str(tmp_path / "m.gguf")) == ""  # an existing .gguf file, likewise
