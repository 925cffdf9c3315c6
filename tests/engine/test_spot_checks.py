"""Spot checks: a server that perturbs its outputs is found, marked suspect (in the client's view and this PC's file),
avoided by routing, and the reply's tokens are still the model's; honest swarms pass every check.

The fault is injected from the test process only: the test replaces one in-process server's `compute` with one
that adds a fixed perturbation to what the real one returns. Nothing in the engine knows about it.
"""

import pytest
import torch

from potluck.core.client.checker import relative_error
from potluck.core.client.local import LocalModelForCausalLM
from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.client.spot_checks import (
    LOOSE_TOLERANCE,
    TIGHT_TOLERANCE,
    Judgement,
    SpotCheckError,
    SpotCheckPolicy,
    judge,
    tolerance_for,
)
from potluck.core.client.suspects import read_suspects, suspects_path

from .swarm_helpers import InProcessSwarm

PROMPT = [5, 17, 33, 2, 40, 99, 120, 7, 8, 9, 60, 61]
NEW_TOKENS = 10


# ---- the rules, from tables -------------------------------------------------------------------------------------
T, F = True, False
JUDGE_CASES = [
    # (id, trusted, agree, expected Judgement)
    ("two agree", [F, F], [[T, T], [T, T]], Judgement(0, frozenset(), frozenset())),
    ("two disagree: a dispute", [F, F], [[T, F], [F, T]], Judgement(None, frozenset(), frozenset({0, 1}))),
    ("the session's result outvoted", [F, F, F], [[T, F, F], [F, T, T], [F, T, T]],
     Judgement(1, frozenset({0}), frozenset())),
    ("the first check outvoted", [F, F, F], [[T, F, T], [F, T, F], [T, F, T]], Judgement(0, frozenset({1}), frozenset())),
    ("three apart: a dispute", [F, F, F], [[T, F, F], [F, T, F], [F, F, T]],
     Judgement(None, frozenset(), frozenset({0, 1, 2}))),
    ("this PC's result decides a two-way disagreement", [F, T], [[T, F], [F, T]],
     Judgement(1, frozenset({0}), frozenset())),
    ("this PC's result outweighs a majority", [F, F, T], [[T, T, F], [T, T, F], [F, F, T]],
     Judgement(2, frozenset({0, 1}), frozenset())),
    ("this PC agrees: nothing wrong", [F, T], [[T, T], [T, T]], Judgement(1, frozenset(), frozenset())),
    ("one result alone", [F], [[T]], Judgement(0, frozenset(), frozenset())),
]


@pytest.mark.parametrize("trusted, agree, expected", [c[1:] for c in JUDGE_CASES], ids=[c[0] for c in JUDGE_CASES])
def test_judge(trusted, agree, expected):
    assert judge(trusted, agree) == expected


@pytest.mark.parametrize("trusted, agree", [([], []), ([F, F], [[T, T]]), ([F, F], [[T, T], [F, T]]),
                                            ([F], [[F]])])
def test_judge_refuses_malformed_agreements(trusted, agree):
    with pytest.raises(ValueError):
        judge(trusted, agree)


@pytest.mark.parametrize("compute, tolerance", [("float32", TIGHT_TOLERANCE), ("float32+int8", TIGHT_TOLERANCE),
                                                ("bfloat16", LOOSE_TOLERANCE), ("float32+int4", LOOSE_TOLERANCE),
                                                ("float16", LOOSE_TOLERANCE), ("something new", LOOSE_TOLERANCE)])
def test_tolerance_for(compute, tolerance):
    assert tolerance_for(compute) == tolerance


def test_relative_error_is_per_token_and_symmetric():
    a = torch.tensor([[[3.0, 4.0], [100.0, 0.0]]])
    b = torch.tensor([[[3.0, 4.5], [100.0, 0.0]]])  # token 0 off by 0.5 of |(3, 4.5)| = 5.41
    assert relative_error(a, b) == pytest.approx(0.5 / float(torch.tensor([3.0, 4.5]).norm()))
    assert relative_error(a, b) == relative_error(b, a)
    assert relative_error(a, a) == 0.0
    assert relative_error(a, torch.full_like(a, float("nan"))) == float("inf")
    with pytest.raises(ValueError, match="different shapes"):
        relative_error(a, b[:, :1])


@pytest.mark.parametrize("rate", [-0.1, 1.5, True, "0.1"])
def test_policy_refuses_bad_rates(rate):
    with pytest.raises(SpotCheckError, match="from 0"):
        SpotCheckPolicy(rate)


def test_policy_rate_and_prefix_limit():
    assert not any(SpotCheckPolicy(0.0).should_check(10) for _ in range(100))
    assert all(SpotCheckPolicy(1.0).should_check(10) for _ in range(100))
    assert not SpotCheckPolicy(1.0, max_tokens=64).should_check(65)
    policy = SpotCheckPolicy(0.1, seed=4)
    share = sum(policy.should_check(10) for _ in range(20_000)) / 20_000
    assert 0.09 < share < 0.11


# ---- end to end ----------------------------------------------------------------------------------------------------
def perturb_outputs(server, size: float = 0.3) -> None:
    """The test's fault hook: `server` returns its real outputs plus a fixed direction of `size` x their norm."""
    real = server.compute
    direction = torch.randn(server.hidden_size, generator=torch.Generator().manual_seed(11))
    direction /= direction.norm()

    async def compute(session, position, hidden):
        out = await real(session, position, hidden)
        return out + size * out.norm(dim=-1, keepdim=True) * direction.to(out.dtype)

    server.compute = compute


def client_for(model_dir, swarm, **kwargs):
    return DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers, timeout=10,
                                                       **kwargs)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("POTLUCK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.slow
def test_a_perturbing_server_is_found_marked_avoided_and_the_tokens_stay_right(tiny_models, home):
    model_dir = str(tiny_models["llama"])
    expected = LocalModelForCausalLM.from_pretrained(model_dir).generate(PROMPT, max_new_tokens=NEW_TOKENS,
                                                                          eos_token_id=None).token_ids
    with InProcessSwarm(model_dir, [(0, 3), (3, 6), (3, 6), (3, 6)]) as swarm:
        first, liar, honest, third = swarm.servers
        perturb_outputs(liar)
        latencies = {first.peer_id: 1.0, liar.peer_id: 1.0, honest.peer_id: 20.0, third.peer_id: 30.0}
        unchecked = client_for(model_dir, swarm, spot_check_rate=0.0, remember_suspects=False)
        unchecked.swarm.pin_latency(latencies)
        try:  # the fault really changes the reply when no one checks
            fooled = unchecked.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None)
        finally:
            unchecked.shutdown()
        assert [h.peer_id for h in fooled.route] == [first.peer_id, liar.peer_id] and fooled.token_ids != expected
        assert fooled.spot_checks == []

        client = client_for(model_dir, swarm, spot_check_rate=1.0)
        client.swarm.pin_latency(latencies)
        try:
            result = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None)
            again = client.generate(PROMPT, max_new_tokens=4, eos_token_id=None)
        finally:
            client.shutdown()
    assert result.token_ids == expected
    caught = result.spot_checks[0]
    assert caught.position == 0 and caught.blocks == (3, 6) and caught.suspects == (liar.peer_id,)
    assert caught.kept == 1 and caught.errors[1] > TIGHT_TOLERANCE and caught.servers[1] == (honest.peer_id,)
    assert caught.servers[2] == (third.peer_id,)  # the third opinion that settled it
    assert all(c.passed for c in result.spot_checks[1:]) and len(result.spot_checks) > 1
    assert liar.peer_id not in {h.peer_id for h in result.route}  # the session went on without it
    assert liar.peer_id in client.swarm.suspects.peers()
    assert liar.peer_id not in {h.peer_id for h in again.route} and again.token_ids == expected[:4]
    remembered = read_suspects(suspects_path())  # this PC's file: `potluck status` and the dashboard read it
    assert set(remembered) == {liar.peer_id}
    finding = remembered[liar.peer_id]
    assert (finding.start_block, finding.end_block, finding.compute) == (3, 6, "float32")
    assert finding.error > finding.tolerance == TIGHT_TOLERANCE


@pytest.mark.slow
def test_a_lying_checker_is_outvoted_and_the_session_keeps_its_result(tiny_models, home):
    model_dir = str(tiny_models["llama"])
    expected = LocalModelForCausalLM.from_pretrained(model_dir).generate(PROMPT, max_new_tokens=6,
                                                                          eos_token_id=None).token_ids
    with InProcessSwarm(model_dir, [(0, 3), (3, 6), (3, 6), (3, 6)]) as swarm:
        first, used, liar, third = swarm.servers
        perturb_outputs(liar, size=0.01)
        client = client_for(model_dir, swarm, spot_check_rate=1.0)
        client.swarm.pin_latency({first.peer_id: 1.0, used.peer_id: 1.0, liar.peer_id: 20.0, third.peer_id: 30.0})
        try:
            result = client.generate(PROMPT, max_new_tokens=6, eos_token_id=None)
        finally:
            client.shutdown()
    assert result.token_ids == expected
    caught = result.spot_checks[0]
    assert caught.suspects == (liar.peer_id,) and caught.kept == 0  # the session's own result was right
    assert [h.peer_id for h in result.route] == [first.peer_id, used.peer_id]
    assert set(read_suspects(suspects_path())) == {liar.peer_id}


@pytest.mark.slow
@pytest.mark.parametrize("speculative", ["off", "lookup"])
def test_honest_servers_pass_every_check(tiny_models, home, speculative):
    model_dir = str(tiny_models["qwen3"])  # sliding-window layers; lookup: multi-token steps and rollbacks
    prompt = [5, 17, 33, 2, 40, 99, 5, 17, 33, 2, 40, 99, 5, 17]
    expected = LocalModelForCausalLM.from_pretrained(model_dir).generate(prompt, max_new_tokens=12,
                                                                          eos_token_id=None).token_ids
    with InProcessSwarm(model_dir, [(0, 2), (0, 2), (2, 6), (2, 4), (4, 6)]) as swarm:
        client = client_for(model_dir, swarm, spot_check_rate=1.0)
        try:
            result = client.generate(prompt, max_new_tokens=12, eos_token_id=None, speculative=speculative)
        finally:
            client.shutdown()
    assert result.token_ids == expected
    assert len(result.spot_checks) >= 6 and all(c.passed and c.kept == 0 for c in result.spot_checks)
    assert max(max(c.errors) for c in result.spot_checks) <= TIGHT_TOLERANCE
    assert not client.swarm.suspects.peers() and read_suspects(suspects_path()) == {}


@pytest.mark.slow
def test_with_only_two_servers_a_disagreement_is_a_dispute_and_both_are_marked(tiny_models, home):
    """Documented limit (SECURITY.md): with nothing to break the tie, the check cannot tell who lied."""
    model_dir = str(tiny_models["llama"])
    with InProcessSwarm(model_dir, [(0, 3), (3, 6), (3, 6)]) as swarm:
        first, liar, honest = swarm.servers
        perturb_outputs(liar)
        client = client_for(model_dir, swarm, spot_check_rate=1.0)
        client.swarm.pin_latency({first.peer_id: 1.0, liar.peer_id: 1.0, honest.peer_id: 20.0})
        try:
            result = client.generate(PROMPT, max_new_tokens=3, eos_token_id=None)
        finally:
            client.shutdown()
    disputed = result.spot_checks[0]
    assert disputed.kept is None and set(disputed.suspects) == {liar.peer_id, honest.peer_id}
    assert set(read_suspects(suspects_path())) == {liar.peer_id, honest.peer_id}
    assert "no third result" in read_suspects(suspects_path())[honest.peer_id].detail


@pytest.mark.slow
def test_a_lying_server_process_is_caught_and_potluck_status_flags_it(tiny_models, home):
    """End to end across processes: every server a real `potluck serve` process, one of them computing wrong (the
    test's wrapper, tests/engine/lying_server.py); the client catches it, the reply stays the model's, and
    `potluck status` in another process, reading this PC's suspects, flags it."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from potluck.core.localswarm import LocalSwarm, child_environment
    from potluck.core.program import program_command

    model_dir = str(tiny_models["llama"])
    expected = LocalModelForCausalLM.from_pretrained(model_dir).generate(PROMPT, max_new_tokens=NEW_TOKENS,
                                                                          eos_token_id=None).token_ids
    env = {"POTLUCK_HOME": str(home)}
    with LocalSwarm(model_dir, [(0, 3), (3, 6), (3, 6)], env=env) as swarm:
        liar = swarm.add_server(3, 6, prefix=[sys.executable, str(Path(__file__).with_name("lying_server.py"))])
        first, honest, third = swarm.servers[:3]
        client = client_for(model_dir, swarm, spot_check_rate=1.0)
        client.swarm.pin_latency({first.peer_id: 1.0, liar.peer_id: 1.0, honest.peer_id: 20.0, third.peer_id: 30.0})
        try:
            result = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None)
        finally:
            client.shutdown()
        status = subprocess.run([*program_command(), "status", "--initial-peers", *swarm.initial_peers, "--json"],
                                capture_output=True, text=True, timeout=120, env=child_environment(env))
    assert result.token_ids == expected
    assert result.spot_checks[0].suspects == (liar.peer_id,)
    assert status.returncode == 0, status.stderr
    servers = {s["peer_id"]: s for m in json.loads(status.stdout)["models"] for g in m["blocks"] for s in g["servers"]}
    flagged = {peer for peer, s in servers.items() if s.get("suspect")}
    assert flagged == {liar.peer_id}, servers
