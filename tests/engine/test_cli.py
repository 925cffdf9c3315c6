"""The CLI contract, end to end, with real `potluck serve` processes."""

import json
import subprocess
import sys

import pytest

from potluck.core.localswarm import LocalSwarm, child_environment

from .test_exactness import reference

POTLUCK = [sys.executable, "-m", "potluck.core"]


def potluck(*args, timeout=180):
    return subprocess.run([*POTLUCK, *args], capture_output=True, text=True, timeout=timeout, env=child_environment())


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    done = potluck("make-tiny-model", "--arch", "llama", "--out", str(out), "--layers", "4", "--hidden", "64", "--seed", "5")
    assert done.returncode == 0, done.stderr
    assert (out / "config.json").exists() and (out / "model.safetensors.index.json").exists()
    assert (out / "tokenizer.json").exists()
    return out


@pytest.mark.slow
def test_serve_generate_status_and_stop(cli_model):
    prompt = [3, 14, 15, 92, 65]
    ref_tokens, _ = reference(cli_model, prompt, 6)
    with LocalSwarm(str(cli_model), [(0, 2), (2, 4)]) as swarm:
        assert all(s.ready.is_set() and s.maddrs for s in swarm.servers)
        peers = swarm.initial_peers

        done = potluck("generate", "--model", str(cli_model), "--initial-peers", *peers, "--prompt-ids", ",".join(map(str, prompt)),
                       "--max-new-tokens", "6", "--greedy", "--no-eos", "--json")
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["token_ids"] == ref_tokens
        assert isinstance(out["text"], str)
        assert [(h["start_block"], h["end_block"]) for h in out["route"]] == [(0, 2), (2, 4)]
        assert {h["peer_id"] for h in out["route"]} == {s.peer_id for s in swarm.servers}

        sampled = [potluck("generate", "--model", str(cli_model), "--initial-peers", *peers, "--prompt", "Hello there",
                           "--max-new-tokens", "5", "--temperature", "0.9", "--top-p", "0.95", "--top-k", "50", "--seed", "7",
                           "--no-eos", "--json") for _ in range(2)]
        assert all(s.returncode == 0 for s in sampled), sampled[0].stderr
        a, b = (json.loads(s.stdout.strip().splitlines()[-1]) for s in sampled)
        assert a["token_ids"] == b["token_ids"] and len(a["token_ids"]) == 5  # same seed, same tokens

        text = potluck("generate", "--model", str(cli_model), "--initial-peers", *peers, "--prompt", "Hi", "--max-new-tokens", "3")
        assert text.returncode == 0 and "tokens/s" in text.stdout and "blocks 0-1" in text.stdout

        status = potluck("status", "--initial-peers", *peers, "--json")
        assert status.returncode == 0, status.stderr
        model = json.loads(status.stdout)["models"][0]
        assert model["num_blocks"] == 4 and model["coverage"] == [1, 1, 1, 1]
        assert any("only one server" in w for w in model["warnings"])
        human = potluck("status", "--initial-peers", *peers, "--model", str(cli_model))
        assert "blocks 0-1" in human.stdout and "online" in human.stdout

        leaving = swarm.servers[1]
        assert leaving.stop() == 0
        assert "stopped" in leaving.log_tail()
        after = json.loads(potluck("status", "--initial-peers", *peers, "--json").stdout)["models"][0]
        assert after["coverage"] == [1, 1, 0, 0]
        assert any("no server online" in w for w in after["warnings"])


@pytest.mark.parametrize("args,message", [
    (["serve", "--model", "/nowhere"], "--new-swarm"),
    (["serve", "--model", "/nowhere", "--new-swarm", "--dtype", "float16"], "only for GPUs"),
    (["serve", "--model", "/nowhere", "--new-swarm"], "neither a folder"),
    (["serve", "--model", "m", "--blocks", "4:2", "--new-swarm"], "need 0 <= start < end"),
    (["generate", "--model", "m", "--initial-peers", "x", "--prompt-ids", "a,b"], "comma-separated"),
    (["generate", "--model", "m", "--initial-peers", "x", "--prompt", "p", "--greedy", "--seed", "1"], "--greedy cannot"),
    (["make-tiny-model", "--arch", "gpt2", "--out", "/tmp/x"], "unknown architecture 'gpt2'"),
    (["make-tiny-model", "--arch", "llama", "--out", "/tmp/x", "--hidden", "40"], "multiple of 32"),
])
def test_bad_command_lines_fail_clearly(args, message):
    done = potluck(*args, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr


@pytest.mark.slow
def test_demo_asks_the_builtin_model_through_three_servers():
    done = potluck("demo", "--max-new-tokens", "12", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started 3 servers" in done.stdout
    assert "answer:   The capital of France is Paris." in done.stdout  # a real model answers for real
    assert done.stdout.count(" -> ") == 2  # the route has three hops
    assert "per token: median" in done.stdout
    assert "identical to the same model run in this process (float32): yes" in done.stdout
