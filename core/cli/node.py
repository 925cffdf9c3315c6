"""`potluck node`: the process the desktop app runs (core/protocol.py on stdin/stdout, see docs/NODE.md)."""

from __future__ import annotations

import argparse

from potluck.core.node.process import run_node


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="the process the desktop app runs: its protocol on stdin/stdout (docs/NODE.md)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return run_node(args.verbose)
