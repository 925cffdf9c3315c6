"""`potluck models`: a short list of models with their size at each precision and whether this PC (and how many
like it) can hold them; `potluck make-tiny-model`: a random-weight model with a small tokenizer, saved sharded."""

from __future__ import annotations

import argparse

from potluck.core.cli.common import CliError, positive_int, print_json
from potluck.core.model.catalog import CATALOG, PRECISIONS, fit_line, size_of
from potluck.core.model.tiny import make_tiny_model as make
from potluck.core.numbers import GIB, format_bytes
from potluck.core.server.memory import available_ram_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-tiny-model", help="write a random-weight model with a small tokenizer")
    p.add_argument("--arch", required=True, help="llama, mistral, qwen2, bloom, … (an unknown one lists the others)")
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=positive_int, default=8)
    p.add_argument("--hidden", type=positive_int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", default="200KB", help="largest safetensors shard, e.g. 200KB or 2GB")
    p.set_defaults(handler=make_tiny_model)

    p = sub.add_parser("models", help="models worth running, their size at each precision, and how many PCs they need")
    p.add_argument("--model", default=None, help="size this one instead: a hub id (only its config.json is fetched), "
                   "a folder or a .gguf file")
    p.add_argument("--free-gib", type=float, default=None, help="free memory per PC (default: this PC's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=list_models)


def list_models(args: argparse.Namespace) -> int:

    if args.free_gib is not None:
        free = int(args.free_gib * GIB)
    else:

        free = available_ram_bytes()
    entries = [(args.model, args.model)] if args.model else [(e.model_id, e.label) for e in CATALOG]
    rows = []
    for model_id, label in entries:
        size = size_of(model_id)
        rows.append({"model": model_id, "label": label, "blocks": size.num_blocks, "native_dtype": size.native_dtype,
                     "bytes": size.blocks_bytes, "fits": {p: fit_line(size, p, free) for p in PRECISIONS}})
    if args.json:
        print_json({"free_bytes": free, "models": rows})
        return 0
    print(f"{'model':<52} {'blocks':>6} {'full':>10} {'int8':>10} {'int4':>10}")
    for row in rows:
        sizes = [format_bytes(row["bytes"][p]) for p in PRECISIONS]
        print(f"{row['label'][:52]:<52} {row['blocks']:>6} {sizes[0]:>10} {sizes[1]:>10} {sizes[2]:>10}")
        print(f"    {row['model']}: {row['fits']['int4']}")
    return 0


def make_tiny_model(args: argparse.Namespace) -> int:
    try:
        out = make(args.arch, args.out, layers=args.layers, hidden=args.hidden, seed=args.seed,
                   shard_size=args.shard_size)
    except ValueError as e:
        raise CliError(str(e)) from None
    print(f"wrote a tiny {args.arch} model ({args.layers} blocks, hidden {args.hidden}) to {out}")
    return 0
