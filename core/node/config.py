"""The node's settings, as the GUI's `set_config` command gives them: a frozen record and a pure parser.

The app sends mode, model, swarm_name, swarm_id, pc_name, memory_cap_bytes (0 = automatic), log_dir, and api_enabled
/ api_port ("Let apps on this PC use the swarm", applied at once), and rules (when this PC serves, core/node/rules.py,
applied at once). A headless owner or a test may add
initial_peers, host, port, device, dtype, num_blocks and cache_tokens. Unknown names and bad values are reported in
words and skipped; the rest still applies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from potluck.core.node.rules import RulesError, ServingRules, parse_rules

MODES = ("create", "join", "plain")


@dataclass(frozen=True)
class NodeConfig:
    mode: str = "plain"  # create: this PC's own swarm; join: the swarm of the invite code; plain: open DHT, no members
    model: str = ""  # Hugging Face id or local folder
    swarm_name: str = ""
    swarm_id: str = ""  # create/join: the stored swarm to open ("" = by swarm_name, or by the invite code)
    pc_name: str = ""  # how friends see this PC
    memory_cap_bytes: int = 0  # most memory the hosted blocks (weights + cache) may take; 0 = from free memory
    log_dir: str = ""  # where the node writes its own log file; "" = the platform's log folder
    initial_peers: tuple[str, ...] = ()  # plain mode: multiaddrs of peers to join through; () = start a new swarm
    host: str = ""  # address to listen on; "" = the Tailscale address if there is one, else 127.0.0.1
    port: int = 0  # 0 = any free port
    device: str = "auto"  # auto (a GPU if torch sees one), cpu, cuda, cuda:N
    dtype: str = "auto"  # auto (the checkpoint's own: bfloat16 stays bfloat16), float32, bfloat16, float16 (GPU)
    quant: str = "none"  # weight precision of this PC's blocks: none, int8, int4 (a private swarm's spec decides)
    num_blocks: int | None = None  # host exactly this many blocks instead of sizing from memory
    cache_tokens: int = 8192  # attention-cache budget, tokens per block
    api_enabled: bool = False  # an OpenAI-compatible API for apps on this PC, on 127.0.0.1:api_port
    api_port: int = 8000
    rules: ServingRules | None = None  # serving rules (core/node/rules.py); None: rules.json in the config folder


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole_number(value: Any) -> int | None:
    """An int, or a float with no fraction (JSON writers send 8e9), else None."""
    if _is_int(value):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _text(name: str, value: Any, limit: int = 4096) -> tuple[Any, str]:
    if not isinstance(value, str) or len(value) > limit:
        return None, f"{name} must be text of at most {limit} characters"
    return value.strip(), ""


def _parse(name: str, value: Any) -> tuple[Any, str]:
    """(parsed value, '') or (None, why not)."""
    if name == "mode":
        return (value, "") if value in MODES else (None, f"mode must be one of {', '.join(MODES)}, got {value!r}")
    if name in ("model", "log_dir", "host", "device", "dtype"):
        return _text(name, value)
    if name == "quant":
        ok = value in ("none", "int8", "int4")
        return (value, "") if ok else (None, f"quant must be none, int8 or int4, got {value!r}")
    if name in ("swarm_name", "pc_name"):
        return _text(name, value, limit=64)
    if name == "swarm_id":
        ok = isinstance(value, str) and (value == "" or re.fullmatch(r"[0-9a-f]{16}", value) is not None)
        return (value, "") if ok else (None, f"swarm_id must be 16 lowercase hex characters, got {value!r}")
    if name == "initial_peers":
        ok = isinstance(value, list) and len(value) <= 64
        ok = ok and all(isinstance(p, str) and 0 < len(p) < 512 for p in value)
        return (tuple(p.strip() for p in value), "") if ok else (None, "initial_peers must be a list of multiaddrs")
    if name == "rules":
        try:
            return (None if value is None else parse_rules(value)), ""
        except RulesError as exc:
            return None, f"rules: {exc}"
    number = _whole_number(value)
    if name == "memory_cap_bytes":
        return (number, "") if number is not None and number >= 0 else (None, "memory_cap_bytes must be >= 0")
    if name == "api_enabled":
        return (value, "") if isinstance(value, bool) else (None, "api_enabled must be true or false")
    if name == "api_port":
        ok = number is not None and 0 < number < 65536
        return (number, "") if ok else (None, "api_port must be in 1..65535")
    if name == "port":
        return (number, "") if number is not None and 0 <= number < 65536 else (None, "port must be in 0..65535")
    if name == "num_blocks":
        if value is None:
            return None, ""
        return (number, "") if number is not None and number >= 1 else (None, "num_blocks must be at least 1 (or null)")
    if name == "cache_tokens":
        return (number, "") if number is not None and number >= 1 else (None, "cache_tokens must be at least 1")
    raise AssertionError(f"no parser for the setting {name!r}")  # a field of NodeConfig without one: a bug here


@dataclass(frozen=True)
class Applied:
    config: NodeConfig
    problems: tuple[str, ...] = ()  # bad values, one sentence each (skipped; the old value stays)
    unknown: tuple[str, ...] = ()  # names this node does not know (a newer app may send more; ignored)


def apply_values(config: NodeConfig, values: Mapping[str, Any]) -> Applied:
    """`config` with `values` applied. Bad values and unknown names are skipped and listed."""
    known = {f.name for f in fields(NodeConfig)}
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for name in (n for n in values if n in known):
        parsed, problem = _parse(name, values[name])
        if problem:
            problems.append(problem)
        else:
            changes[name] = parsed
    unknown = tuple(sorted(n for n in values if n not in known))
    return Applied(replace(config, **changes), tuple(problems), unknown)


NETWORK_SETTINGS = ("mode", "swarm_name", "swarm_id", "initial_peers", "host", "port")  # a change needs a new DHT
LIVE_SETTINGS = ("log_dir", "api_enabled", "api_port", "rules")  # take effect at once, serving or not


def network_key(config: NodeConfig) -> tuple:
    """What identifies the swarm connection these settings describe."""
    return tuple(getattr(config, name) for name in NETWORK_SETTINGS)


def restart_needed(old: NodeConfig, new: NodeConfig) -> list[str]:
    """Settings that changed and only take effect when serving starts again (all but LIVE_SETTINGS)."""
    return [f.name for f in fields(NodeConfig)
            if f.name not in LIVE_SETTINGS and getattr(old, f.name) != getattr(new, f.name)]
