"""What every causal language model front end shares: prompts (token ids, text or chat messages through the
model's chat template), the checks on a request, and `generate`. Subclasses say how a session runs the blocks:
through the swarm (core/client/model.py) or in this process (core/client/local.py)."""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import torch

from potluck.core.client.generation import GenerationRequest, GenerationResult, Session, generate_tokens
from potluck.core.client.sampling import SamplingParams
from potluck.core.client.speculative import DraftModel, DraftSource, PromptLookup
from potluck.core.model.loading import ModelSpec

DEFAULT_EOS = object()  # "the model's own end-of-sequence token(s)"


class CausalLM:
    """`spec` (the opened model), `parts` (embeddings, final norm, LM head), `tokenizer` (or None)."""

    wire_dtype: torch.dtype = torch.float32  # what hidden states travel in between the client and the blocks

    def __init__(self, spec: ModelSpec, parts, tokenizer):
        self.spec, self.parts, self.tokenizer = spec, parts, tokenizer

    # ---- what a subclass provides --------------------------------------------------------------------------
    def new_session(self, max_length: int, private: bool = False) -> Session:
        """A session for `max_length` tokens; `private`: keep the first and last blocks on this PC."""
        raise NotImplementedError

    def run(self, coro, timeout_seconds: float):
        """Run a coroutine of this model's sessions to completion (on the model's event loop)."""
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    @property
    def compute(self) -> str:
        """What the blocks compute in ("bfloat16", "float32+int4"); "" until known."""
        return ""

    # ---- prompts ---------------------------------------------------------------------------------------------
    def encode(self, prompt: str | None = None, messages: list[dict] | None = None) -> list[int]:
        """Token ids of a text prompt, or of chat messages through the model's chat template."""
        if messages is not None:
            if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
                prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
            else:
                return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                               return_dict=False))
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: pass token ids instead of text")
        if prompt is None:
            raise ValueError("give token ids, a prompt or chat messages")
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def eos_ids(self, eos_token_id=DEFAULT_EOS) -> frozenset[int]:
        if eos_token_id is DEFAULT_EOS:
            eos_token_id = self.spec.config.eos_token_id
        if eos_token_id is None:
            return frozenset()
        values = eos_token_id if isinstance(eos_token_id, (list, tuple, set, frozenset)) else [eos_token_id]
        return frozenset(int(e) for e in values)

    def request(self, input_ids=None, *, prompt: str | None = None, messages: list[dict] | None = None,
                max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int | None = None,
                eos_token_id=DEFAULT_EOS, stop_strings: Sequence[str] = ()) -> GenerationRequest:
        """A checked GenerationRequest (ValueError saying what is wrong)."""
        if input_ids is None:
            input_ids = self.encode(prompt, messages)
        ids = [int(i) for i in (input_ids.flatten().tolist() if isinstance(input_ids, torch.Tensor) else input_ids)]
        if any(not 0 <= i < self.spec.config.vocab_size for i in ids):
            raise ValueError(f"token ids must be in [0, {self.spec.config.vocab_size})")
        return GenerationRequest(tuple(ids), max_new_tokens,
                                 SamplingParams(do_sample, temperature, top_k, top_p, repetition_penalty, seed),
                                 self.eos_ids(eos_token_id), tuple(s for s in stop_strings if s))

    # ---- generation ------------------------------------------------------------------------------------------
    def generate(self, input_ids=None, *, on_token: Callable[[int, str], None] | None = None,
                 cancel: threading.Event | None = None, speculative: str = "off", draft_tokens: int = 8,
                 private: bool = False, **kwargs) -> GenerationResult:
        """Generate up to `max_new_tokens` after the prompt (token ids, `prompt=` text, or chat `messages=`).

        Keyword arguments: max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty, seed,
        eos_token_id (None: ignore the end of sequence), stop_strings; `on_token(token_id, text)` streams;
        `speculative` "lookup" (guesses from the text so far) or "draft" (the model set with `set_draft_model`)
        checks up to `draft_tokens` guesses per step through the blocks: the same tokens, fewer trips;
        `private=True` keeps the first and last blocks on this PC (core/client/private.py)."""
        request = self.request(input_ids, **kwargs)
        return self.run(self.agenerate(request, on_token=on_token, cancel=cancel, speculative=speculative,
                                       draft_tokens=draft_tokens, private=private), self.timeout_for(request))

    draft_model: DraftModel | None = None  # for speculative="draft" (core/client/local.load_draft_model)

    def draft_source(self, speculative: str) -> DraftSource | None:
        if speculative in ("off", None):
            return None
        if speculative == "lookup":
            return PromptLookup()
        if speculative == "draft":
            if self.draft_model is None:
                raise ValueError("speculative='draft' needs a draft model: set model.draft_model = load_draft_model(…)")
            return self.draft_model
        raise ValueError(f"speculative must be off, lookup or draft, not {speculative!r}")

    async def agenerate(self, request: GenerationRequest, *, on_token=None, cancel=None, speculative: str = "off",
                        draft_tokens: int = 8, private: bool = False) -> GenerationResult:
        """`generate` as a coroutine on this model's event loop (the API server and the node use it)."""
        if not isinstance(private, bool):
            raise ValueError(f"private must be True or False, not {private!r}")
        draft = self.draft_source(speculative)
        headroom = draft_tokens if draft is not None else 0
        session = self.new_session(len(request.prompt_ids) + request.max_new_tokens + headroom, private=private)
        return await generate_tokens(session, self.parts, self.tokenizer, request, wire_dtype=self.wire_dtype,
                                     on_token=on_token, cancel=cancel, draft=draft, draft_tokens=draft_tokens)

    def timeout_for(self, request: GenerationRequest) -> float | None:
        return None
