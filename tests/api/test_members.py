"""`--swarm NAME` and the node's endpoints, for real: a node in its own private swarm serves apps on this PC when
asked to (and says where in its stats), and this PC's `generate`, `chat` and `api` go through it while it holds the
member's identity; with no node running, a member's `generate --swarm` joins as the member and gets the same tokens;
while `potluck serve --swarm` holds the identity, terminal clients are told so."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx2
import openai
import pytest

from potluck.core import protocol
from potluck.core.protocol import NodeState
from tests.api.test_cli import start_api
from tests.node.node_driver import REPO, NodeUnderTest, node_environment
from tests.node.test_node_process import PC_NAME, gui_values

pytestmark = pytest.mark.slow
SWARM = "Friday night"  # gui_values' swarm name
HELLO = [{"role": "user", "content": "Hello"}]


def potluck(env: dict, *args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "potluck.core", *args], env=env, cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def node(tiny_model, tmp_path_factory):
    home = tmp_path_factory.mktemp("n")  # short: the node's socket path must fit a sockaddr
    running = NodeUnderTest(home)
    running.home, running.api_port = home, free_port()
    try:
        running.state(NodeState.STOPPED, timeout=30)
        running.send(protocol.SetConfig(values=gui_values(tiny_model, home, api_enabled=True,
                                                          api_port=running.api_port)))
        running.send(protocol.Start())
        running.state(NodeState.SERVING, timeout=180)
        yield running
    finally:
        running.kill()


def test_the_node_serves_apps_on_this_pc_when_asked(node, local_model):
    url = f"http://127.0.0.1:{node.api_port}/v1"
    node.send(protocol.Refresh())
    node.expect("stats with the API's address", lambda e: isinstance(e, protocol.Stats) and e.api_url == url, 30)
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    (model,) = client.models.list().data
    assert model.id == "tiny-llama"
    reply = client.chat.completions.create(model=model.id, messages=HELLO, temperature=0, max_tokens=6)
    assert reply.choices[0].message.content == local_model.generate(messages=HELLO, max_new_tokens=6).text
    node.send(protocol.Refresh())
    node.expect("the reply counted as used", lambda e: isinstance(e, protocol.Stats) and e.tokens_used >= 6, 30)

    node.send(protocol.SetConfig(values={"api_enabled": False}))
    node.send(protocol.Refresh())
    node.expect("stats without the API", lambda e: isinstance(e, protocol.Stats) and e.api_url == "", 30)
    client.close()
    deadline = time.monotonic() + 15  # the endpoint goes once its connections are done (a few seconds at most)
    while True:
        try:
            httpx2.get(url + "/models", timeout=2)
        except httpx2.ConnectError:
            break
        except httpx2.TimeoutException:
            pass
        assert time.monotonic() < deadline, "the API still answers after it was turned off"
        time.sleep(0.2)


def test_terminal_programs_go_through_the_running_node(node, local_model):
    env = node_environment(node.home)
    done = potluck(env, "generate", "--swarm", SWARM, "--prompt", "Hello", "--max-new-tokens", "6", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = local_model.generate(prompt="Hello", max_new_tokens=6)
    assert (out["token_ids"], out["text"]) == (expected.token_ids, expected.text)
    assert [h["name"] for h in out["route"]] == [PC_NAME]  # the node's own server: blocks 0-3 on this PC

    talk = potluck(env, "chat", "--swarm", SWARM, "--max-new-tokens", "6", stdin="Hello\n")
    assert talk.returncode == 0, talk.stderr
    assert talk.stdout == local_model.generate(messages=HELLO, max_new_tokens=6).text + "\n"

    child, url, _ = start_api(["--swarm", SWARM, "--port", "0"], env=env)
    try:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(model="tiny-llama", messages=HELLO, temperature=0, max_tokens=6,
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == \
            local_model.generate(messages=HELLO, max_new_tokens=6).text
    finally:
        child.kill()


def test_a_member_joins_itself_when_no_node_runs(tiny_model, local_model, tmp_path_factory):
    ana_env = node_environment(tmp_path_factory.mktemp("ana"))
    ben_env = node_environment(tmp_path_factory.mktemp("ben"))
    made = potluck(ana_env, "swarm", "create", "--name", "Club", "--model", tiny_model, "--member-name", "Ana")
    assert made.returncode == 0, made.stderr
    server = subprocess.Popen([sys.executable, "-m", "potluck.core", "serve", "--swarm", "Club", "--host", "127.0.0.1",
                               "--dtype", "float32"],  # `serve --swarm` refuses the default "auto" today
                              env=ana_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in server.stdout:
            lines.append(line)
            if line.strip() == "ready":
                break
        assert lines and lines[-1].strip() == "ready", "".join(lines) + server.stderr.read()
        code = potluck(ana_env, "invite", "create", "--swarm", "Club", "--this-pc-only").stdout.split()[-1]
        joined = potluck(ben_env, "join", code, "--no-serve", "--host", "127.0.0.1", "--name", "Ben")
        assert joined.returncode == 0, joined.stderr

        done = potluck(ben_env, "generate", "--swarm", "Club", "--model", tiny_model, "--prompt", "Hello",
                       "--max-new-tokens", "6", "--json")
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["token_ids"] == local_model.generate(prompt="Hello", max_new_tokens=6).token_ids
        assert [h["name"] for h in out["route"]] == ["Ana"]

        busy = potluck(ana_env, "generate", "--swarm", "Club", "--prompt", "Hello")  # `serve` holds Ana's identity
        assert busy.returncode == 2
        assert "in use by another Potluck program" in busy.stderr and "offers no way in" in busy.stderr
    finally:
        server.terminate()
        server.wait(30)
