"""`potluck` without a screen: the parser and the dispatch. Each command family registers its sub-commands with
their handler (`set_defaults(handler=…)`), so this file knows no command by name."""

from __future__ import annotations

import argparse
import logging

from potluck.core import __version__
from potluck.core.cli import api, chat, common, demo, generating, models, node, serving, status, swarm
from potluck.core.program import apply_engine_environment

FAMILIES = (models, serving, generating, chat, api, status, demo, swarm, node)  # the order of `potluck --help`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="potluck", description="Run a large language model across friends' PCs.")
    parser.add_argument("--version", action="version", version=f"potluck {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="start a 2-server local swarm on a tiny model, generate, check, exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in FAMILIES:
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_engine_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.self_test:
        return common.run_handler(demo.run_self_test, args, "--self-test", args.verbose)
    if args.command is None:
        parser.print_help()
        return common.EXIT_USER_ERROR
    return common.run_handler(args.handler, args, args.command, args.verbose)
