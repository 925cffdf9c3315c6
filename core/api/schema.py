"""OpenAI-compatible requests, checked: a JSON body in, a `CompletionRequest` (plain, frozen) or an `ApiError` out.

Pure functions, standard library only. What is understood:

- `/v1/chat/completions`: model, messages (system, developer, user, assistant; text content, as a string or as
  text parts), stream, stream_options.include_usage, temperature, top_p, max_tokens / max_completion_tokens, stop,
  seed, n = 1, and vLLM's extensions `ignore_eos`, `top_k`, `repetition_penalty`;
- `/v1/completions`: the same, with `prompt` (a string or token ids, one prompt) instead of messages;
- Potluck's own extensions (with the OpenAI Python client: `extra_body={...}`): `speculative` ("lookup", the
  default, guesses tokens from the text so far and checks them in one pass: the same reply, fewer trips through
  the swarm; "off") and `private` (true: the first and last blocks run on this PC, so friends' PCs see neither
  the prompt's tokens nor the reply's logits; see SECURITY.md).

Temperature 0 is greedy decoding (what `model.generate` does by default). A field this server cannot honour (tools,
logprobs, n > 1, penalties other than repetition_penalty, images, ...) is refused with 400 and a sentence naming it;
fields that change nothing here (user, metadata, store, ...) are accepted and ignored; any other name is refused as
unrecognised, as OpenAI does.
"""

from __future__ import annotations

import enum
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 8 * 2**20  # a request body larger than this is refused (413)
MAX_STOP_STRINGS = 16  # OpenAI allows 4; vLLM any number
MAX_STOP_CHARS = 512
DEFAULT_MAX_TOKENS = 512  # new tokens when the request names no limit (each reserves cache on every server)
MAX_TEMPERATURE = 2.0

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}  # -> template role
COMMON_FIELDS = frozenset({"model", "stream", "stream_options", "temperature", "top_p", "max_tokens", "stop", "seed",
                           "n", "ignore_eos", "top_k", "repetition_penalty", "speculative", "private"})
SPECULATIVE_MODES = ("lookup", "off")  # what `speculative` may say ("draft" needs a draft model: not offered here)
DEFAULT_SPECULATIVE = "lookup"  # never slower on open chat: bench/bench_chat_options.py
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens"}
TEXT_FIELDS = COMMON_FIELDS | {"prompt", "echo", "best_of", "suffix", "logprobs"}
IGNORED_FIELDS = frozenset({"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key",
                            "prompt_cache_retention", "reasoning_effort", "verbosity"})
# name -> the values that mean "not used" (anything else is refused)
OFF_VALUES: dict[str, tuple] = {
    "tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
    "parallel_tool_calls": (None,), "logit_bias": (None, {}), "top_logprobs": (None, 0), "audio": (None,),
    "modalities": (None, ["text"]), "prediction": (None,), "web_search_options": (None,),
    "response_format": (None, {"type": "text"}), "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0), "logprobs": (None, False),
}
WHY_NOT = {
    "frequency_penalty": "use repetition_penalty instead", "presence_penalty": "use repetition_penalty instead",
    "tools": "this server does not call tools", "functions": "this server does not call functions",
    "response_format": "only plain text replies are supported", "logprobs": "log probabilities are not reported",
}


class ApiError(ValueError):
    """A request this server refuses, with the HTTP status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ERROR_TYPES.get(status, "server_error")

    def body(self) -> dict:
        """OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
               429: "rate_limit_error", 500: "server_error", 503: "server_error"}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


class Kind(str, enum.Enum):
    CHAT = "chat.completion"
    TEXT = "text_completion"


@dataclass(frozen=True)
class Message:
    role: str  # system, user or assistant (a "developer" message is a system message)
    content: str


@dataclass(frozen=True)
class CompletionRequest:
    kind: Kind
    model: str
    messages: tuple[Message, ...] = ()  # chat
    prompt: str | None = None  # completions: text ...
    prompt_ids: tuple[int, ...] | None = None  # ... or token ids
    max_tokens: int | None = None  # new tokens at most; None: up to DEFAULT_MAX_TOKENS, as the context allows
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    stream: bool = False
    include_usage: bool = False  # streamed: a last chunk with the token counts
    speculative: str = DEFAULT_SPECULATIVE  # "lookup" or "off" (Potluck's extension)
    private: bool = False  # the first and last blocks on this PC (Potluck's extension)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def sampling_kwargs(self) -> dict:
        """Keyword arguments of CausalLM.request / generate for this request's sampling."""
        if self.greedy:
            return dict(do_sample=False, repetition_penalty=self.repetition_penalty)
        return dict(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                    seed=self.seed, repetition_penalty=self.repetition_penalty)


# ---- the two endpoints ----------------------------------------------------------------------------------------------
def parse_chat(body: Any) -> CompletionRequest:
    """A checked chat completion request. Raises ApiError (400) saying which field is wrong and why."""
    body = _object(body)
    _check_names(body, CHAT_FIELDS)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty list of {role, content} objects", "messages")
    limit = _max_tokens(body, "max_tokens")
    newer = _max_tokens(body, "max_completion_tokens")
    if limit is not None and newer is not None and limit != newer:
        raise bad("give max_completion_tokens or max_tokens, not two different limits", "max_completion_tokens")
    return CompletionRequest(Kind.CHAT, messages=tuple(_message(m, i) for i, m in enumerate(messages)),
                             max_tokens=newer if newer is not None else limit, **_common(body))


def parse_completion(body: Any) -> CompletionRequest:
    """A checked (text) completion request. Raises ApiError (400)."""
    body = _object(body)
    _check_names(body, TEXT_FIELDS)
    for name, off in (("echo", (None, False)), ("best_of", (None, 1)), ("suffix", (None, "")), ("logprobs", (None,))):
        if body.get(name) not in off:
            raise bad(f"{name} is not supported by this server", name)
    prompt, prompt_ids = _prompt(body.get("prompt"))
    return CompletionRequest(Kind.TEXT, prompt=prompt, prompt_ids=prompt_ids,
                             max_tokens=_max_tokens(body, "max_tokens"), **_common(body))


def to_body(request: CompletionRequest) -> dict:
    """The JSON body that parses back into `request` (how a client forwards a checked request)."""
    body: dict[str, Any] = {"model": request.model, "temperature": request.temperature, "top_p": request.top_p,
                            "stream": request.stream}
    if request.kind is Kind.CHAT:
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    else:
        body["prompt"] = list(request.prompt_ids) if request.prompt_ids is not None else request.prompt
    optional = {"max_tokens": request.max_tokens, "seed": request.seed, "stop": list(request.stop) or None,
                "ignore_eos": request.ignore_eos or None, "top_k": request.top_k or None,
                "speculative": request.speculative if request.speculative != DEFAULT_SPECULATIVE else None,
                "private": request.private or None,
                "repetition_penalty": request.repetition_penalty if request.repetition_penalty != 1.0 else None,
                "stream_options": {"include_usage": True} if request.include_usage else None}
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


# ---- fields ---------------------------------------------------------------------------------------------------------
def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise bad("the request body must be a JSON object")
    return body


def _check_names(body: Mapping[str, Any], known: frozenset[str]) -> None:
    for name, value in body.items():
        if name in known or name in IGNORED_FIELDS:
            continue
        if name in OFF_VALUES:
            if value not in OFF_VALUES[name]:
                why = WHY_NOT.get(name, "this server does not support it")
                raise bad(f"{name} is not supported: {why}", name)
            continue
        raise bad(f"Unrecognized request argument supplied: {name}", name, "unrecognized_argument")


def _common(body: Mapping[str, Any]) -> dict:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad("model must name the model (see GET /v1/models)", "model")
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise bad("stream_options is only allowed with stream: true", "stream_options")
        if not isinstance(options, Mapping) or set(options) - {"include_usage"}:
            raise bad("stream_options may only hold include_usage", "stream_options")
        include_usage = _flag(options, "include_usage", "stream_options.include_usage")
    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        raise bad("only n = 1 is supported: send one request per reply", "n")
    temperature = _number(body, "temperature", 1.0, 0.0, MAX_TEMPERATURE)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise bad("top_p must be greater than 0 (use temperature 0 for greedy decoding)", "top_p")
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < -1):
        raise bad("top_k must be a whole number: -1 or 0 (off) or a positive number of tokens", "top_k")
    penalty = _number(body, "repetition_penalty", 1.0, 0.0, math.inf)
    if penalty == 0.0:
        raise bad("repetition_penalty must be greater than 0 (1 is off)", "repetition_penalty")
    seed = body.get("seed")
    if seed is not None and not (_is_int(seed) and -2**63 <= seed < 2**64):
        raise bad("seed must be a whole number", "seed")
    speculative = body.get("speculative")
    speculative = DEFAULT_SPECULATIVE if speculative is None else speculative
    if speculative not in SPECULATIVE_MODES:
        raise bad(f"speculative must be one of {', '.join(SPECULATIVE_MODES)}, got {speculative!r}", "speculative")
    return dict(model=model.strip(), stream=stream, include_usage=include_usage, temperature=temperature,
                top_p=top_p, top_k=max(0, top_k or 0), repetition_penalty=penalty,
                seed=seed % 2**63 if seed is not None else None, stop=_stop(body.get("stop")),
                ignore_eos=_flag(body, "ignore_eos"), speculative=speculative, private=_flag(body, "private"))


def _flag(body: Mapping[str, Any], name: str, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"{param or name} must be true or false", param or name)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        allowed = f"at least {low:g}" if math.isinf(high) else f"between {low:g} and {high:g}"
        raise bad(f"{name} must be a number {allowed}", name)
    return float(value)


def _max_tokens(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise bad(f"{name} must be a whole number of at least 1", name)
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(s, str) for s in values):
        raise bad("stop must be a string or a list of strings", "stop")
    if len(values) > MAX_STOP_STRINGS or any(len(s) > MAX_STOP_CHARS for s in values):
        raise bad(f"stop takes at most {MAX_STOP_STRINGS} strings of at most {MAX_STOP_CHARS} characters", "stop")
    return tuple(dict.fromkeys(s for s in values if s))


def _message(value: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(value, Mapping):
        raise bad(f"{where} must be an object with a role and a content", where)
    role = value.get("role")
    if role in ("tool", "function"):
        raise bad(f"{where}: {role} messages are not supported (this server does not call tools)", f"{where}.role")
    if role not in ROLES:
        raise bad(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role")
    if value.get("tool_calls") or value.get("function_call"):
        raise bad(f"{where}: tool calls are not supported", f"{where}.tool_calls")
    return Message(ROLES[role], _content(value.get("content"), f"{where}.content"))


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        raise bad(f"{where} must be text, or a list of text parts", where)
    texts = []
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            what = f"{kind!r} parts" if isinstance(kind, str) else "parts other than text"
            raise bad(f"{where}[{i}]: this model reads text only ({what} are not supported)", f"{where}[{i}]")
        texts.append(part["text"])
    return "\n".join(texts)


def _prompt(value: Any) -> tuple[str | None, tuple[int, ...] | None]:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]  # a batch of one prompt
    if isinstance(value, str):
        if not value:
            raise bad("prompt is empty", "prompt")
        return value, None
    if isinstance(value, list) and value and all(_is_int(t) and t >= 0 for t in value):
        return None, tuple(value)
    if isinstance(value, list) and len(value) > 1 and all(isinstance(p, (str, list)) for p in value):
        raise bad("one prompt per request: send several requests for several prompts", "prompt")
    raise bad("prompt must be a non-empty string or a non-empty list of token ids", "prompt")


def plan_max_tokens(prompt_tokens: int, requested: int | None, context_tokens: int | None) -> int:
    """New tokens to generate: `requested`, or DEFAULT_MAX_TOKENS cut to what the context leaves. Raises ApiError
    (400, context_length_exceeded) when the prompt, or the prompt and the requested tokens, do not fit."""
    if context_tokens is None:
        return requested or DEFAULT_MAX_TOKENS
    left = context_tokens - prompt_tokens
    if left < 1 or (requested is not None and requested > left):
        reply = requested or 1
        asked = f"{prompt_tokens + reply} tokens ({prompt_tokens} in the prompt, {reply} for the reply)"
        raise bad(f"This model's maximum context length is {context_tokens} tokens. However, you requested {asked}. "
                  "Please shorten the prompt or lower max_tokens.", "messages", "context_length_exceeded")
    return requested if requested is not None else min(DEFAULT_MAX_TOKENS, left)


def access_problem(authorization: str | None, host: str | None, api_key: str | None,
                   allowed_hosts: frozenset[str] | None) -> ApiError | None:
    """Why a request may not pass, or None: a Host header naming another host than the loopback names this server
    answers to (a web page's DNS-rebinding trick), or a missing or wrong `Authorization: Bearer KEY`."""
    if allowed_hosts is not None and _host_name(host or "") not in allowed_hosts:
        return ApiError(400, "this server answers to requests for this PC (localhost) only", code="invalid_host")
    if api_key is not None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not _same(given.strip(), api_key):
            return ApiError(401, "Incorrect API key provided: send it as 'Authorization: Bearer KEY'",
                            code="invalid_api_key")
    return None


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8"))
