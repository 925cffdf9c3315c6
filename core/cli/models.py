"""`potluck make-tiny-model`: a random-weight model with a small tokenizer, saved sharded like a real one."""

from __future__ import annotations

import argparse

from potluck.core.cli.common import CliError, positive_int
from potluck.core.model.tiny import make_tiny_model as make


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-tiny-model", help="write a random-weight model with a small tokenizer")
    p.add_argument("--arch", required=True, help="llama, mistral, qwen2, bloom, … (an unknown one lists the others)")
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=positive_int, default=8)
    p.add_argument("--hidden", type=positive_int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", default="200KB", help="largest safetensors shard, e.g. 200KB or 2GB")
    p.set_defaults(handler=make_tiny_model)


def make_tiny_model(args: argparse.Namespace) -> int:
    try:
        out = make(args.arch, args.out, layers=args.layers, hidden=args.hidden, seed=args.seed,
                   shard_size=args.shard_size)
    except ValueError as e:
        raise CliError(str(e)) from None
    print(f"wrote a tiny {args.arch} model ({args.layers} blocks, hidden {args.hidden}) to {out}")
    return 0
