"""What every command shares: the error type, JSON output, argument types, the mapping from domain errors to
one-line messages and exit codes, and the lines `serve` prints once it serves."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from potluck.core.errors import PotluckError

EXIT_OK, EXIT_BUG, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

Handler = Callable[[argparse.Namespace], int | None]


class CliError(PotluckError):
    """A user error found by the command line itself (flags that do not go together, …)."""


def run_handler(handler: Handler, args: argparse.Namespace, command: str, verbose: bool) -> int:
    """Run a command's handler and turn what escapes into an exit code and one line on stderr:
    a PotluckError (the user can fix it) exits 2 with its message; anything else is a bug and exits 1
    with its type (or its traceback with --verbose)."""
    try:
        return handler(args) or EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except PotluckError as e:
        print(f"potluck {command}: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:
        if verbose:
            raise
        print(f"potluck {command}: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_BUG


def print_json(obj) -> None:
    print(json.dumps(obj, indent=None, separators=(",", ":")), flush=True)


def print_ready(server) -> None:
    """What `potluck serve` prints once it serves (LocalSwarm and the app read these lines)."""
    from potluck.core.swarm.dht import visible_maddrs

    print(f"serving blocks {server.stack.start}:{server.stack.end} of {server.spec.uid} "
          f"({server.throughput_tokens_per_second:.0f} tokens/s per block) as {server.peer_id}", flush=True)
    for maddr in visible_maddrs(server.dht):
        print(f"multiaddr {maddr}", flush=True)
    print("ready", flush=True)


# ---- argument types ------------------------------------------------------------------------------------------------
def block_range(text: str) -> tuple[int, int]:
    try:
        start, end = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a block range like 0:8") from None
    if not 0 <= start < end:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= start < end")
    return start, end


def token_ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of token ids") from None
    if not ids or any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError("--prompt-ids needs at least one non-negative token id")
    return ids


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0.1 and 3600 seconds")
    return value
