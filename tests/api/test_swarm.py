"""The API over a real swarm (two block servers with their own DHTs and p2p daemons, a DistributedModelForCausalLM):
greedy replies equal `model.generate` and the whole model's, requests at once are all answered right, and a client
that leaves mid-stream frees the servers' sessions."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from potluck.core.api.responses import SseReader
from tests.api.conftest import RunningApi
from tests.engine.swarm_helpers import InProcessSwarm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def swarm_api(tiny_model):
    from potluck.core.client.model import DistributedModelForCausalLM

    with InProcessSwarm(tiny_model, [(0, 2), (2, 4)]) as swarm:
        model = DistributedModelForCausalLM.from_pretrained(tiny_model, initial_peers=swarm.initial_peers)
        running = RunningApi(model, ["tiny-llama"])
        running.swarm, running.model = swarm, model
        try:
            yield running
        finally:
            running.stop()
            model.shutdown()


def messages(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_greedy_replies_through_the_swarm_equal_generate(swarm_api, local_model):
    client = swarm_api.client()
    reply = client.chat.completions.create(model="tiny-llama", messages=messages("Hello"), temperature=0,
                                           max_tokens=10)
    through_swarm = swarm_api.model.generate(messages=messages("Hello"), max_new_tokens=10)
    assert reply.choices[0].message.content == through_swarm.text
    assert through_swarm.token_ids == local_model.generate(messages=messages("Hello"), max_new_tokens=10).token_ids
    assert {h.start_block for h in through_swarm.route} == {0, 2}  # both servers took part
    streamed = client.completions.create(model="tiny-llama", prompt="Once upon", temperature=0, max_tokens=8,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed) == \
        swarm_api.model.generate(prompt="Once upon", max_new_tokens=8).text


def test_requests_at_once_are_all_answered_right(swarm_api, local_model):
    prompts = ["the sea", "the city at night", "the mountains", "a cat"]
    expected = [local_model.generate(messages=messages(p), max_new_tokens=8).text for p in prompts]
    client = swarm_api.client()

    def ask(prompt: str) -> str:
        stream = client.chat.completions.create(model="tiny-llama", messages=messages(prompt), temperature=0,
                                                max_tokens=8, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    with ThreadPoolExecutor(len(prompts)) as pool:
        assert list(pool.map(ask, prompts)) == expected


def test_a_client_that_leaves_frees_the_servers_sessions(swarm_api):
    servers, stats = swarm_api.swarm.servers, swarm_api.stats
    before = stats.cancelled
    body = {"model": "tiny-llama", "messages": messages("Hello"), "max_tokens": 1500, "ignore_eos": True,
            "stream": True}
    with httpx2.stream("POST", swarm_api.url + "/chat/completions", json=body, timeout=60) as response:
        reader, chunks = SseReader(), []
        for line in response.iter_lines():
            data = reader.feed(line)
            if data is not None:
                chunks.append(json.loads(data))
            if len(chunks) == 5:
                assert all(s.active_sessions == 1 for s in servers)  # the reply holds a session on each server
                break
    deadline = time.monotonic() + 30
    while any(s.active_sessions for s in servers) or stats.active or stats.cancelled == before:
        assert time.monotonic() < deadline, [s.active_sessions for s in servers]
        time.sleep(0.05)
    assert stats.cancelled == before + 1
