"""Tables for the API's request checks (core/api/schema.py): OpenAI bodies in, CompletionRequests or ApiErrors out."""

from __future__ import annotations

import pytest

from potluck.core.api.schema import (
    DEFAULT_MAX_TOKENS,
    ApiError,
    CompletionRequest,
    Kind,
    Message,
    access_problem,
    parse_chat,
    parse_completion,
    plan_max_tokens,
    to_body,
)

HI = [{"role": "user", "content": "Hi"}]


def chat(**fields):
    return {"model": "m", "messages": HI, **fields}


def req(kind=Kind.CHAT, **fields):
    base = dict(model="m", messages=(Message("user", "Hi"),)) if kind is Kind.CHAT else dict(model="m")
    return CompletionRequest(kind, **{**base, **fields})


CHAT_CASES = [
    ("defaults: OpenAI's temperature 1", chat(), req()),
    ("greedy, limits, stop", chat(temperature=0, max_tokens=7, stop="\n\n", seed=3),
     req(temperature=0.0, max_tokens=7, stop=("\n\n",), seed=3)),
    ("max_completion_tokens wins the newer name", chat(max_completion_tokens=9), req(max_tokens=9)),
    ("both limits agreeing", chat(max_tokens=9, max_completion_tokens=9), req(max_tokens=9)),
    ("stop list, empties and repeats dropped", chat(stop=["a", "", "a", "b"]), req(stop=("a", "b"))),
    ("stream with usage", chat(stream=True, stream_options={"include_usage": True}),
     req(stream=True, include_usage=True)),
    ("vLLM extensions", chat(ignore_eos=True, top_k=40, repetition_penalty=1.1),
     req(ignore_eos=True, top_k=40, repetition_penalty=1.1)),
    ("top_k -1 is off", chat(top_k=-1), req()),
    ("developer is a system message; text parts joined",
     chat(messages=[{"role": "developer", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]),
     req(messages=(Message("system", "Be brief."), Message("user", "a\nb")))),
    ("an assistant turn with extra keys", chat(messages=[*HI, {"role": "assistant", "content": "Yo", "refusal": None}]),
     req(messages=(Message("user", "Hi"), Message("assistant", "Yo")))),
    ("fields that change nothing are ignored", chat(user="u1", metadata={"a": "b"}, store=False, n=1,
                                                   frequency_penalty=0, presence_penalty=0.0, logprobs=False,
                                                   response_format={"type": "text"}, tools=[], logit_bias={}),
     req()),
    ("model name trimmed", chat(model=" m "), req()),
    ("negative seed folded into range", chat(seed=-1), req(seed=2**63 - 1)),
]


@pytest.mark.parametrize("body, expected", [c[1:] for c in CHAT_CASES], ids=[c[0] for c in CHAT_CASES])
def test_chat_requests(body, expected):
    assert parse_chat(body) == expected


TEXT_CASES = [
    ("text prompt", {"model": "m", "prompt": "Once"}, req(Kind.TEXT, prompt="Once")),
    ("batch of one", {"model": "m", "prompt": ["Once"]}, req(Kind.TEXT, prompt="Once")),
    ("token ids", {"model": "m", "prompt": [5, 6, 7]}, req(Kind.TEXT, prompt_ids=(5, 6, 7))),
    ("token ids, batch of one", {"model": "m", "prompt": [[5, 6]]}, req(Kind.TEXT, prompt_ids=(5, 6))),
    ("echo false, best_of 1", {"model": "m", "prompt": "x", "echo": False, "best_of": 1, "max_tokens": 3},
     req(Kind.TEXT, prompt="x", max_tokens=3)),
]


@pytest.mark.parametrize("body, expected", [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_text_requests(body, expected):
    assert parse_completion(body) == expected


ERROR_CASES = [
    # (id, parser, body, param, words in the message)
    ("not an object", parse_chat, [1], None, "must be a JSON object"),
    ("no model", parse_chat, {"messages": HI}, "model", "model must name the model"),
    ("no messages", parse_chat, {"model": "m"}, "messages", "non-empty list"),
    ("empty messages", parse_chat, chat(messages=[]), "messages", "non-empty list"),
    ("bad role", parse_chat, chat(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "one of"),
    ("tool message", parse_chat, chat(messages=[{"role": "tool", "content": "x"}]), "messages[0].role", "tools"),
    ("tool calls", parse_chat, chat(messages=[{"role": "assistant", "content": None, "tool_calls": [{}]}]),
     "messages[0].tool_calls", "tool calls"),
    ("image part", parse_chat, chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
     "messages[0].content[0]", "text only"),
    ("content missing", parse_chat, chat(messages=[{"role": "user"}]), "messages[0].content", "text"),
    ("n = 2", parse_chat, chat(n=2), "n", "only n = 1"),
    ("tools", parse_chat, chat(tools=[{"type": "function"}]), "tools", "does not call tools"),
    ("logprobs", parse_chat, chat(logprobs=True), "logprobs", "not supported"),
    ("frequency penalty", parse_chat, chat(frequency_penalty=0.5), "frequency_penalty", "repetition_penalty"),
    ("json mode", parse_chat, chat(response_format={"type": "json_object"}), "response_format", "plain text"),
    ("unknown field", parse_chat, chat(colour="blue"), "colour", "Unrecognized request argument supplied: colour"),
    ("temperature too high", parse_chat, chat(temperature=2.5), "temperature", "between 0 and 2"),
    ("temperature as text", parse_chat, chat(temperature="hot"), "temperature", "between 0 and 2"),
    ("temperature true", parse_chat, chat(temperature=True), "temperature", "between 0 and 2"),
    ("top_p zero", parse_chat, chat(top_p=0), "top_p", "greater than 0"),
    ("top_p above 1", parse_chat, chat(top_p=1.5), "top_p", "between 0 and 1"),
    ("top_k float", parse_chat, chat(top_k=2.5), "top_k", "whole number"),
    ("max_tokens zero", parse_chat, chat(max_tokens=0), "max_tokens", "at least 1"),
    ("max_tokens float", parse_chat, chat(max_tokens=2.0), "max_tokens", "at least 1"),
    ("limits disagree", parse_chat, chat(max_tokens=3, max_completion_tokens=4), "max_completion_tokens", "not two"),
    ("stop not text", parse_chat, chat(stop=[1]), "stop", "list of strings"),
    ("too many stops", parse_chat, chat(stop=[str(i) for i in range(17)]), "stop", "at most 16"),
    ("stream not bool", parse_chat, chat(stream="yes"), "stream", "true or false"),
    ("stream_options without stream", parse_chat, chat(stream_options={"include_usage": True}), "stream_options",
     "only allowed with stream"),
    ("stream_options unknown", parse_chat, chat(stream=True, stream_options={"x": 1}), "stream_options",
     "include_usage"),
    ("seed text", parse_chat, chat(seed="1"), "seed", "whole number"),
    ("repetition penalty zero", parse_chat, chat(repetition_penalty=0), "repetition_penalty", "greater than 0"),
    ("ignore_eos not bool", parse_chat, chat(ignore_eos=1), "ignore_eos", "true or false"),
    ("several prompts", parse_completion, {"model": "m", "prompt": ["a", "b"]}, "prompt", "one prompt per request"),
    ("empty prompt", parse_completion, {"model": "m", "prompt": ""}, "prompt", "empty"),
    ("no prompt", parse_completion, {"model": "m"}, "prompt", "non-empty string"),
    ("negative token id", parse_completion, {"model": "m", "prompt": [1, -2]}, "prompt", "token ids"),
    ("echo", parse_completion, {"model": "m", "prompt": "x", "echo": True}, "echo", "not supported"),
    ("best_of", parse_completion, {"model": "m", "prompt": "x", "best_of": 3}, "best_of", "not supported"),
    ("text logprobs", parse_completion, {"model": "m", "prompt": "x", "logprobs": 2}, "logprobs", "not supported"),
    ("messages on completions", parse_completion, {"model": "m", "prompt": "x", "messages": HI}, "messages",
     "Unrecognized"),
]


@pytest.mark.parametrize("parse, body, param, words", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_bad_requests_are_refused_saying_why(parse, body, param, words):
    with pytest.raises(ApiError) as caught:
        parse(body)
    error = caught.value
    assert (error.status, error.param) == (400, param)
    assert words in error.message
    assert error.body() == {"error": {"message": error.message, "type": "invalid_request_error", "param": param,
                                      "code": error.code}}


@pytest.mark.parametrize("request_", [
    req(),
    req(temperature=0.0, max_tokens=5, stop=("x", "y"), ignore_eos=True),
    req(stream=True, include_usage=True, top_k=3, top_p=0.5, seed=9, repetition_penalty=1.3),
    req(Kind.TEXT, prompt="Once upon", max_tokens=2),
    req(Kind.TEXT, prompt_ids=(1, 2, 3), temperature=0.0, stream=True),
])
def test_a_checked_request_survives_its_body(request_):
    parse = parse_chat if request_.kind is Kind.CHAT else parse_completion
    assert parse(to_body(request_)) == request_


def test_sampling_arguments_for_the_model():
    assert req(temperature=0.0, top_p=0.3, repetition_penalty=1.2).sampling_kwargs() == \
        dict(do_sample=False, repetition_penalty=1.2)
    assert req(temperature=0.7, top_p=0.9, top_k=5, seed=1).sampling_kwargs() == \
        dict(do_sample=True, temperature=0.7, top_p=0.9, top_k=5, seed=1, repetition_penalty=1.0)


@pytest.mark.parametrize("prompt, requested, context, expected", [
    (10, None, None, DEFAULT_MAX_TOKENS),
    (10, 7, None, 7),
    (10, None, 2048, DEFAULT_MAX_TOKENS),
    (2000, None, 2048, 48),  # what is left of the context
    (10, 2038, 2048, 2038),
    (2047, None, 2048, 1),
])
def test_how_many_new_tokens(prompt, requested, context, expected):
    assert plan_max_tokens(prompt, requested, context) == expected


@pytest.mark.parametrize("prompt, requested, context, asked", [
    (2048, None, 2048, "2049 tokens (2048 in the prompt, 1 for the reply)"),
    (10, 2039, 2048, "2049 tokens (10 in the prompt, 2039 for the reply)"),
])
def test_too_long_for_the_context(prompt, requested, context, asked):
    with pytest.raises(ApiError) as caught:
        plan_max_tokens(prompt, requested, context)
    assert caught.value.code == "context_length_exceeded" and caught.value.status == 400
    assert "maximum context length is 2048 tokens" in caught.value.message and asked in caught.value.message


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@pytest.mark.parametrize("authorization, host, key, hosts, status", [
    (None, "127.0.0.1:8000", None, LOOPBACK, None),
    (None, "localhost:8000", None, LOOPBACK, None),
    (None, "[::1]:8000", None, LOOPBACK, None),
    (None, "LOCALHOST", None, LOOPBACK, None),
    (None, "evil.example:8000", None, LOOPBACK, 400),  # a page's DNS-rebinding trick
    (None, None, None, LOOPBACK, 400),
    (None, "anything", None, None, None),
    ("Bearer s3cret", "10.0.0.2:8000", "s3cret", None, None),
    ("bearer s3cret", "10.0.0.2:8000", "s3cret", None, None),
    ("Bearer wrong", "10.0.0.2:8000", "s3cret", None, 401),
    ("Bearer", "10.0.0.2:8000", "s3cret", None, 401),
    ("Basic s3cret", "10.0.0.2:8000", "s3cret", None, 401),
    (None, "10.0.0.2:8000", "s3cret", None, 401),
    ("Bearer s3cret", "evil.example", "s3cret", LOOPBACK, 400),
])
def test_who_may_pass(authorization, host, key, hosts, status):
    problem = access_problem(authorization, host, key, hosts)
    assert (problem.status if problem else None) == status
    if problem is not None:
        assert key is None or key not in problem.message
