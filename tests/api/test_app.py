"""The OpenAI-compatible API over the whole model in this process, driven by the official `openai` package and by a
raw HTTP reader (httpx2): replies equal `model.generate`, streams are well-formed server-sent events, concurrent
requests are all answered right, errors come in OpenAI's shape, and a client that leaves cancels its reply."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest

from potluck.core.api.responses import SseReader
from tests.api.conftest import RunningApi

HELLO = [{"role": "user", "content": "Hello"}]


def reference(model, n, **prompt):
    return model.generate(max_new_tokens=n, **prompt)


def raw_events(url: str, path: str, body: dict, headers: dict | None = None) -> tuple[httpx2.Response, list[str]]:
    """The data of every server-sent event of one streamed reply, read off the wire."""
    reader, events = SseReader(), []
    with httpx2.stream("POST", url + path, json=body, headers=headers, timeout=60) as response:
        for line in response.iter_lines():
            data = reader.feed(line)
            if data is not None:
                events.append(data)
    return response, events


def test_the_model_is_listed(api):
    client = api.client()
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    assert client.models.retrieve("tiny-llama").owned_by == "potluck"


def test_a_greedy_chat_reply_equals_generate(api, local_model):
    reply = api.client().chat.completions.create(model="tiny-llama", messages=HELLO, temperature=0, max_tokens=12)
    expected = reference(local_model, 12, messages=HELLO)
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "length"
    assert reply.id.startswith("chatcmpl-") and reply.model == "tiny-llama"
    prompt_tokens = len(local_model.encode(messages=HELLO))
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == \
        (prompt_tokens, 12, prompt_tokens + 12)


def test_text_completions_from_text_and_from_token_ids(api, local_model, tiny_model):
    client = api.client()
    text = client.completions.create(model=tiny_model, prompt="Tell me a story about the sea", temperature=0,
                                     max_tokens=9)  # the model's path is accepted as its name too
    assert text.choices[0].text == reference(local_model, 9, prompt="Tell me a story about the sea").text
    assert text.object == "text_completion" and text.model == "tiny-llama"
    ids = [40, 41, 42, 43, 44]
    by_ids = client.completions.create(model="tiny-llama", prompt=ids, temperature=0, max_tokens=6)
    assert by_ids.choices[0].text == reference(local_model, 6, input_ids=ids).text
    assert by_ids.usage.prompt_tokens == 5


def test_a_streamed_reply_is_the_same_reply_in_pieces(api, local_model):
    chunks = list(api.client().chat.completions.create(
        model="tiny-llama", messages=HELLO, temperature=0, max_tokens=12, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == reference(local_model, 12, messages=HELLO).text
    assert len([p for p in pieces if p]) > 3  # streamed, not sent at the end
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert len({c.id for c in chunks}) == 1


def test_the_raw_stream_on_the_wire(api, local_model):
    body = {"model": "tiny-llama", "prompt": "Once", "temperature": 0, "max_tokens": 5, "stream": True}
    response, events = raw_events(api.url, "/completions", body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == reference(local_model, 5, prompt="Once").text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and "usage" not in chunks[-1]


def test_concurrent_requests_are_all_answered_right(api, local_model):
    prompts = [f"Tell me a story about the {w}" for w in ("sea", "city at night", "mountains", "stars", "dog", "cat")]
    expected = [reference(local_model, 10, messages=[{"role": "user", "content": p}]).text for p in prompts]
    client = api.client()

    def ask(i: int) -> str:
        messages = [{"role": "user", "content": prompts[i]}]
        if i % 2:
            stream = client.chat.completions.create(model="tiny-llama", messages=messages, temperature=0,
                                                    max_tokens=10, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        reply = client.chat.completions.create(model="tiny-llama", messages=messages, temperature=0, max_tokens=10)
        return reply.choices[0].message.content

    with ThreadPoolExecutor(len(prompts)) as pool:
        assert list(pool.map(ask, range(len(prompts)))) == expected


def test_a_stop_string_ends_the_reply_and_is_never_shown(api, local_model):
    full = reference(local_model, 16, messages=HELLO).text
    stop = next(full[k : k + 2] for k in range(len(full) // 3, len(full) - 1)
                if full.index(full[k : k + 2]) == k and full[k : k + 2].isprintable())  # first seen mid-reply
    client = api.client()
    whole = client.chat.completions.create(model="tiny-llama", messages=HELLO, temperature=0, max_tokens=16,
                                           stop=[stop])
    assert whole.choices[0].message.content == full[: full.index(stop)]
    assert whole.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model="tiny-llama", messages=HELLO, temperature=0, max_tokens=16,
                                              stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == full[: full.index(stop)]


def test_seeded_sampling_is_reproducible_and_equals_generate(api, local_model):
    client = api.client()
    ask = dict(model="tiny-llama", messages=HELLO, temperature=0.9, top_p=0.8, seed=1234, max_tokens=12)
    first, second = (client.chat.completions.create(**ask).choices[0].message.content for _ in range(2))
    expected = local_model.generate(messages=HELLO, max_new_tokens=12, do_sample=True, temperature=0.9, top_p=0.8,
                                    seed=1234).text
    assert first == second == expected
    other = client.chat.completions.create(**{**ask, "seed": 99}).choices[0].message.content
    assert other != first


def test_ignore_eos_runs_past_the_end_of_sequence(tiny_model, local_model):
    from potluck.core.client.local import LocalModelForCausalLM

    greedy = reference(local_model, 8, messages=HELLO).token_ids
    model = LocalModelForCausalLM.from_pretrained(tiny_model)
    model.spec.config.eos_token_id = greedy[2]  # the third token of the reply ends a sequence, for this model
    running = RunningApi(model, ["tiny"])
    try:
        client = running.client()
        ended = client.chat.completions.create(model="tiny", messages=HELLO, temperature=0, max_tokens=8)
        assert (ended.choices[0].finish_reason, ended.usage.completion_tokens) == ("stop", greedy.index(greedy[2]) + 1)
        past = client.chat.completions.create(model="tiny", messages=HELLO, temperature=0, max_tokens=8,
                                              extra_body={"ignore_eos": True})
        assert (past.choices[0].finish_reason, past.usage.completion_tokens) == ("length", 8)
    finally:
        running.stop()


@pytest.mark.parametrize("kwargs, error, status, words", [
    (dict(model="gpt-4o"), openai.NotFoundError, 404, "The model `gpt-4o` does not exist"),
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]), openai.BadRequestError, 400,
     "does not call tools"),
    (dict(n=3), openai.BadRequestError, 400, "only n = 1"),
    (dict(extra_body={"mirostat": 2}), openai.BadRequestError, 400, "Unrecognized request argument supplied: mirostat"),
    (dict(max_tokens=5000), openai.BadRequestError, 400, "maximum context length is 2048 tokens"),
])
def test_refusals_in_openais_shape(api, kwargs, error, status, words):
    ask = {"model": "tiny-llama", "messages": HELLO, **kwargs}
    with pytest.raises(error) as caught:
        api.client().chat.completions.create(**ask)
    assert caught.value.status_code == status and words in caught.value.message
    assert set(caught.value.body) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("method, path, headers, content, status, words", [
    ("POST", "/chat/completions", {"content-type": "text/plain"}, b"{}", 415, "Content-Type: application/json"),
    ("POST", "/chat/completions", {"content-type": "application/json"}, b"{not json", 400, "not a usable JSON"),
    ("POST", "/chat/completions", {"content-type": "application/json"}, b"[1, 2]", 400, "not a usable JSON"),
    ("POST", "/chat/completions", {"content-type": "application/json"}, b" " * (8 * 2**20 + 1), 413, "larger"),
    ("GET", "/chat/completions", {}, None, 405, "GET is not allowed"),
    ("GET", "/embeddings", {}, None, 404, "no such endpoint"),
    ("GET", "/models", {"host": "evil.example"}, None, 400, "requests for this PC"),
    ("GET", "/models/gpt-4o", {}, None, 404, "does not exist"),
])
def test_http_level_refusals(api, method, path, headers, content, status, words):
    response = httpx2.request(method, api.url + path, headers=headers, content=content, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error"


def test_an_api_key_is_required_once_set(local_model):
    running = RunningApi(local_model, ["tiny"], api_key="s3cret-key")
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            running.client(api_key="wrong").models.list()
        assert caught.value.status_code == 401 and "s3cret" not in str(caught.value.body)
        assert httpx2.get(running.url + "/models").headers["www-authenticate"] == "Bearer"
        assert [m.id for m in running.client(api_key="s3cret-key").models.list().data] == ["tiny"]
    finally:
        running.stop()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def test_a_client_that_leaves_mid_stream_cancels_its_reply(api):
    before = (api.stats.cancelled, api.stats.completion_tokens)
    body = {"model": "tiny-llama", "messages": HELLO, "max_tokens": 1900, "ignore_eos": True, "stream": True}
    with httpx2.stream("POST", api.url + "/chat/completions", json=body, timeout=60) as response:
        reader, events = SseReader(), 0
        for line in response.iter_lines():
            events += reader.feed(line) is not None
            if events == 4:
                break  # leaving the block closes the connection
    wait_until(lambda: api.stats.active == 0 and api.stats.cancelled == before[0] + 1)
    assert api.stats.completion_tokens - before[1] < 1900


def test_a_client_that_gives_up_waiting_cancels_its_reply(api):
    before = api.stats.cancelled
    body = {"model": "tiny-llama", "messages": HELLO, "max_tokens": 1900, "ignore_eos": True}
    with pytest.raises(httpx2.ReadTimeout):
        httpx2.post(api.url + "/chat/completions", json=body, timeout=httpx2.Timeout(30, read=0.5))
    wait_until(lambda: api.stats.active == 0 and api.stats.cancelled == before + 1)
