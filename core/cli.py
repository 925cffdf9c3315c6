"""The headless `potluck` command line: every node capability without a screen.

    potluck make-tiny-model --arch llama --out DIR
    potluck serve --model M --new-swarm | --initial-peers MADDR ...
    potluck generate --model M --initial-peers MADDR ... --prompt TEXT --max-new-tokens N [--json]
    potluck status --initial-peers MADDR ... [--model M] [--json]
    potluck demo
    potluck node                       (run by the desktop app: core.protocol on stdin/stdout)
    potluck swarm create | swarms | invite | join | members | revoke   (private swarms: core/commands_swarm.py)
    potluck --self-test

Sub-commands import torch, transformers and hivemind only when they run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from potluck.core import __version__


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _block_range(text: str) -> tuple[int, int]:
    try:
        start, end = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a block range like 0:8") from None
    if not 0 <= start < end:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= start < end")
    return start, end


def _token_ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of token ids") from None
    if not ids or any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError("--prompt-ids needs at least one non-negative token id")
    return ids


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="potluck", description="Run a large language model across friends' PCs.")
    parser.add_argument("--version", action="version", version=f"potluck {__version__}")
    parser.add_argument("--self-test", action="store_true", help="start a 2-server local swarm on a tiny model, generate, check, exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("make-tiny-model", help="write a random-weight model with a small tokenizer")
    p.add_argument("--arch", required=True, choices=["llama", "mistral", "qwen2", "bloom"])
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=_positive_int, default=8)
    p.add_argument("--hidden", type=_positive_int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", default="200KB", help="largest safetensors shard, e.g. 200KB or 2GB")

    p = sub.add_parser("serve", help="host a range of blocks for the swarm")
    p.add_argument("--model", help="a model folder or Hugging Face id (with --swarm: default the swarm's model)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--blocks", type=_block_range, help="host exactly these blocks, e.g. 0:8")
    which.add_argument("--num-blocks", type=_positive_int, help="host this many blocks (default: as many as free memory allows)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; with --swarm: this PC's "
                   "Tailscale address; 0.0.0.0 listens on every interface)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--announce-port", type=_positive_int, default=None,
                   help="port other peers dial to reach this server (a forwarded port or relay), if not --port")
    swarm = p.add_mutually_exclusive_group()
    swarm.add_argument("--initial-peers", nargs="+", default=[], metavar="MADDR")
    swarm.add_argument("--new-swarm", action="store_true", help="start a new swarm with this server as its first peer")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, or float16 (GPU only)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--cache-tokens", type=_positive_int, default=8192, help="attention-cache budget, tokens per block")
    p.add_argument("--max-session-tokens", type=_positive_int, default=4096)
    p.add_argument("--reserve-gib", type=float, default=2.0,
                   help="memory to leave free for your own programs; below it the server sheds blocks (default 2)")
    p.add_argument("--no-resize", action="store_true", help="keep the block range even when memory runs low")
    p.add_argument("--announce-period", type=float, default=10.0, metavar="SECONDS",
                   help="how often to re-announce in the swarm; records expire after 3 periods (default 10)")
    p.add_argument("--name", default="", help="how friends see this server")
    p.add_argument("--revision", default=None)
    p.add_argument("--identity", default=None, help="private key file: keep the same peer id across restarts")

    p = sub.add_parser("generate", help="generate text through the swarm")
    p.add_argument("--model", required=True)
    p.add_argument("--initial-peers", nargs="+", required=True, metavar="MADDR")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt")
    prompt.add_argument("--prompt-ids", type=_token_ids)
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    p.add_argument("--greedy", action="store_true", help="always pick the likeliest token (the default without sampling options)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", nargs="*", default=[], metavar="TEXT", help="stop when any of these strings appears")
    p.add_argument("--no-eos", action="store_true", help="do not stop at the end-of-sequence token")
    p.add_argument("--no-push", action="store_true", help="relay every hop through the client instead of server-to-server push")
    p.add_argument("--dtype", default="float32", help="dtype of hidden states on the wire")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for any server before failing over")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("status", help="which servers host which blocks")
    p.add_argument("--initial-peers", nargs="+", required=True, metavar="MADDR")
    p.add_argument("--model", default=None, help="only this model (default: every model announced in the swarm)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("demo", help="a local 3-server swarm on a built-in tiny model: generate, show timings and route")
    p.add_argument("--servers", type=_positive_int, default=3)
    p.add_argument("--prompt", default="Tell me a story about the sea")
    p.add_argument("--max-new-tokens", type=_positive_int, default=24)
    p.add_argument("--arch", default="llama", choices=["llama", "mistral", "qwen2", "bloom"])

    sub.add_parser("node", help="the process the desktop app runs: its protocol on stdin/stdout (docs/NODE.md)")

    from potluck.core.commands_swarm import add_swarm_commands

    add_swarm_commands(sub)  # swarm, swarms, invite, join, members, revoke; --swarm on serve
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.self_test:
        from potluck.core.demo import self_test

        return self_test()
    if args.command is None:
        parser.print_help()
        return 2
    from potluck.core import commands, commands_swarm

    name = "cmd_" + args.command.replace("-", "_")
    handler = getattr(commands, name, None) or getattr(commands_swarm, name)
    try:
        return handler(args) or 0
    except KeyboardInterrupt:
        return 130
    except CliError as e:
        print(f"potluck {args.command}: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # anything a user can cause (bad model folder, swarm unreachable) ends with one clear line
        if args.verbose:
            raise
        print(f"potluck {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


def print_json(obj) -> None:
    print(json.dumps(obj, indent=None, separators=(",", ":")), flush=True)
