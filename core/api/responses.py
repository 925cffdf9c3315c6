"""OpenAI-compatible response shapes and server-sent events, with no engine: pure functions over plain values.

A streamed reply is a sequence of SSE events, `data: <one JSON object>` each, ending with `data: [DONE]`:
a chat stream starts with a chunk whose delta carries the role, then content deltas, then an empty delta with the
finish reason, then (when asked with stream_options.include_usage) a chunk with no choices and the usage. An error
after the stream began is one event `data: {"error": {...}}` before `[DONE]`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import PurePath

from potluck.core.api.schema import Kind

SSE_DONE = b"data: [DONE]\n\n"
OWNER = "potluck"  # `owned_by` of every model
FINISH_REASONS = {"eos": "stop", "stop_sequence": "stop", "length": "length", "cancelled": "stop"}


def finish_reason(stop_reason: str) -> str:
    """OpenAI's finish_reason for a StopReason value: the end of sequence or a stop string -> "stop"; the token
    limit -> "length"."""
    return FINISH_REASONS.get(stop_reason, "stop")


def new_id(kind: Kind) -> str:
    return ("chatcmpl-" if kind is Kind.CHAT else "cmpl-") + secrets.token_hex(12)


def served_model_id(model: str, is_local: bool) -> str:
    """The id apps see for `model`: a hub id as given; a local folder or file by its name (a .gguf without it)."""
    if not is_local:
        return model
    name = PurePath(model.rstrip("/\\")).name
    return name.removesuffix(".gguf")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def body(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def completion_body(kind: Kind, id: str, created: int, model: str, text: str, finish: str, usage: Usage,
                    details: dict | None = None) -> dict:
    """A whole (not streamed) reply: a chat.completion or a text_completion."""
    if kind is Kind.CHAT:
        choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                  "logprobs": None, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    body = {"id": id, "object": kind.value, "created": created, "model": model, "choices": [choice],
            "usage": usage.body(), "system_fingerprint": None}
    return _with_details(body, details)


def chunk_body(kind: Kind, id: str, created: int, model: str, *, text: str | None = None, role: bool = False,
               finish: str | None = None, details: dict | None = None) -> dict:
    """One streamed chunk: the role (chat only, first), a piece of text, or the finish reason (last)."""
    if kind is Kind.CHAT:
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    body = {"id": id, "object": obj, "created": created, "model": model, "choices": [choice],
            "system_fingerprint": None}
    return _with_details(body, details)


def usage_chunk(kind: Kind, id: str, created: int, model: str, usage: Usage) -> dict:
    """The last chunk of a stream asked for with stream_options.include_usage: no choices, the counts."""
    obj = "chat.completion.chunk" if kind is Kind.CHAT else "text_completion"
    return {"id": id, "object": obj, "created": created, "model": model, "choices": [], "usage": usage.body(),
            "system_fingerprint": None}


def _with_details(body: dict, details: dict | None) -> dict:
    if details is not None:
        body["potluck"] = details  # this PC's own clients (core/api/gateway.py) read the route and token ids here
    return body


def models_body(ids: list[str], created: int) -> dict:
    return {"object": "list", "data": [model_body(i, created) for i in ids]}


def model_body(id: str, created: int) -> dict:
    return {"id": id, "object": "model", "created": created, "owned_by": OWNER}


# ---- server-sent events ---------------------------------------------------------------------------------------------
def sse(obj: dict) -> bytes:
    """One server-sent event carrying `obj` as compact JSON."""
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


class SseReader:
    """Server-sent events from a stream's text lines: `feed(line)` returns an event's data (its `data:` fields
    joined by newlines) at the blank line that ends it, else None. Comments and other fields are skipped."""

    def __init__(self):
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        return None


class StopHoldback:
    """Streamed text that never shows (part of) a stop string.

    `feed(piece)` returns what may be sent now: text that is followed by something other than the start of a stop
    string; a possible start is held back until the next piece decides. Once a stop string appears, nothing more
    is sent. `finish(text)` returns the rest of the final reply (cut at its stop string by the engine) that was not
    sent yet."""

    def __init__(self, stop: tuple[str, ...] = ()):
        self.stop = tuple(s for s in stop if s)
        self.sent = ""
        self._pending = ""
        self._stopped = False

    def feed(self, piece: str) -> str:
        if self._stopped:
            return ""
        if not self.stop:
            self.sent += piece
            return piece
        text = self._pending + piece
        cuts = [text.find(s) for s in self.stop if s in text]
        if cuts:
            out, self._pending, self._stopped = text[: min(cuts)], "", True
        else:
            hold = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            out, self._pending = text[: len(text) - hold], text[len(text) - hold :]
        self.sent += out
        return out

    def finish(self, final_text: str) -> str:
        rest = final_text[len(self.sent) :] if final_text.startswith(self.sent) else ""
        self.sent += rest
        return rest
