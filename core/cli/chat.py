"""`potluck chat`: talk with the pooled model in this terminal.

Each line you type is a user message; the reply streams as it comes, and the conversation so far goes through the
model's chat template every turn. `/reset` starts over, `/exit` (or Ctrl-D) leaves, `/help` lists these. Ctrl-C
while a reply streams stops that reply (what came so far stays in the conversation), not the program.

Replies go to standard output, one per turn followed by a newline; notes ("[stopped]", errors, the welcome line)
go to standard error, so piping a script of lines in gives just the replies out.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import signal
import sys
import threading
from dataclasses import dataclass, field

from potluck.core.cli.common import positive_int
from potluck.core.cli.generating import SWARM_HELP, add_trust_flags, open_model_for, sampling_kwargs
from potluck.core.errors import PotluckError
from potluck.core.protocol import StopReason

HELP = "/reset starts a new conversation, /exit leaves (or Ctrl-D); Ctrl-C stops a reply"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="talk with the model in this terminal")
    p.add_argument("--model", help="a model folder, a .gguf file or a Hugging Face id (with --swarm: default the "
                   "swarm's model)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--initial-peers", nargs="+", metavar="MADDR")
    where.add_argument("--swarm", metavar="NAME", help=SWARM_HELP)
    where.add_argument("--local", action="store_true", help="run the whole model in this process")
    p.add_argument("--system", default=None, help="a system message that starts every conversation")
    p.add_argument("--max-new-tokens", type=positive_int, default=512, help="the longest reply, in tokens")
    p.add_argument("--greedy", action="store_true", help="always pick the likeliest token (the default without "
                   "sampling options)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--quant", choices=("none", "int8", "int4"), default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for any server before failing over")
    p.add_argument("--speculative", choices=("off", "lookup"), default="lookup", help="lookup (the default): guess "
                   "tokens from the conversation and check them in one pass through the swarm (the same replies, "
                   "fewer trips); off: one token a pass")
    add_trust_flags(p)
    p.set_defaults(handler=chat, no_push=False)


# ---- what a line means, and the conversation (pure) ------------------------------------------------------------------
class Action(enum.Enum):
    SAY = "say"
    RESET = "reset"
    EXIT = "exit"
    HELP = "help"
    NOTHING = "nothing"
    UNKNOWN = "unknown"


COMMANDS = {"/reset": Action.RESET, "/new": Action.RESET, "/exit": Action.EXIT, "/quit": Action.EXIT,
            "/help": Action.HELP}


def parse_line(line: str) -> tuple[Action, str]:
    """(what to do, the text): a message to send, one of COMMANDS, an unknown /command, or nothing (blank)."""
    text = line.strip()
    if not text:
        return Action.NOTHING, ""
    if text.startswith("/") and " " not in text:
        return COMMANDS.get(text.lower(), Action.UNKNOWN), text
    return Action.SAY, line.rstrip("\r\n")


@dataclass
class Conversation:
    system: str | None = None
    turns: list[dict] = field(default_factory=list)

    def messages_with(self, user_text: str) -> list[dict]:
        """The messages to send for a new user message (the conversation so far, then it)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.turns, {"role": "user", "content": user_text}]

    def add(self, user_text: str, reply: str) -> None:
        self.turns += [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]

    def reset(self) -> None:
        self.turns = []


# ---- the loop ------------------------------------------------------------------------------------------------------
def chat(args: argparse.Namespace) -> int:
    kwargs = sampling_kwargs(args)
    model = open_model_for(args)
    try:
        name = getattr(model, "model_name", None) or args.model
        options = dict(max_new_tokens=args.max_new_tokens, speculative=args.speculative, private=args.private)
        run_chat(model, Conversation(args.system), {**options, **kwargs}, name)
    finally:
        model.shutdown()
    return 0


def run_chat(model, conversation: Conversation, generate_kwargs: dict, name: str) -> None:
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    note(f"Chat with {name}: {HELP}.")
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            note("\n(Ctrl-C stops a reply; /exit or Ctrl-D leaves)")
            continue
        action, text = parse_line(line)
        if action is Action.EXIT:
            break
        if action is Action.RESET:
            conversation.reset()
            note("(a new conversation)")
        elif action is Action.HELP:
            note(HELP)
        elif action is Action.UNKNOWN:
            note(f"unknown command {text}: {HELP}")
        elif action is Action.SAY:
            reply = stream_reply(model, conversation.messages_with(text), generate_kwargs)
            if reply is not None:
                conversation.add(text, reply)


def stream_reply(model, messages: list[dict], generate_kwargs: dict) -> str | None:
    """Stream one reply to standard output; Ctrl-C stops it. The reply's text, or None when it failed."""
    cancel = threading.Event()
    shown = []

    def show(token_id: int, piece: str) -> None:
        shown.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    try:
        with _ctrl_c_sets(cancel):
            result = model.generate(messages=messages, on_token=show, cancel=cancel, **generate_kwargs)
    except (PotluckError, ValueError) as exc:
        print(flush=True)
        note(f"error: {exc}")
        return None
    streamed = "".join(shown)  # a last incomplete character is held back while streaming: show it now
    print(result.text[len(streamed):] if result.text.startswith(streamed) else "", flush=True)
    if result.stop_reason is StopReason.CANCELLED:
        note("[stopped]")
    return result.text


@contextlib.contextmanager
def _ctrl_c_sets(event: threading.Event):
    """While inside, Ctrl-C (SIGINT) sets `event` instead of raising KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, lambda *_: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
