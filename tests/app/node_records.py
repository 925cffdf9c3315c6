"""Reading what fake_node.py recorded (FAKE_NODE_RECORD): its launches and the commands it received."""

from __future__ import annotations

import json
from pathlib import Path

from potluck.core import protocol


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sent_commands(path: Path) -> list[protocol.Command]:
    return [protocol.decode_command(r["command"]) for r in read_records(path) if "command" in r]


def launches(path: Path) -> list[dict]:
    return [r for r in read_records(path) if r.get("launch")]
