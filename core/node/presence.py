"""Presence: every running node says in the swarm's DHT that it is there, serving or not.

Server records (core/swarm/records.py) exist only while a PC serves blocks, so a paused friend used to vanish
from the others' member lists while still counting itself, and two PCs disagreed ("1 friend online" on one,
"no friends online yet" on the other). Every node now stores a small presence record (its name and node state)
every PRESENCE_PERIOD_SECONDS under one key, signed with its own key in a private swarm like its server records,
and reads everyone's. `core.node.stats.members` applies the same rule on every PC to the same announcements.

Light at import (hivemind is reached only through the DHT object the caller passes).
"""

from __future__ import annotations

import logging

from potluck.core.node.stats import Presence
from potluck.core.swarm import dht as swarm_dht

log = logging.getLogger(__name__)

PRESENCE_KEY = "_potluck.presence"
PRESENCE_PERIOD_SECONDS = 10.0  # how often a node renews its presence (and at once when its state changes)
PRESENCE_READ_SECONDS = 4.0  # how often a node reads everyone's (a leaving node says so: offline within this)
PRESENCE_TTL_SECONDS = 30.0  # a node that stopped renewing is gone after this long
MAX_PRESENCE = 512
_STATES = ("serving", "paused", "starting", "draining", "stopped", "failed", "stopping")


def presence_value(name: str, state: str) -> dict:
    return {"v": 1, "name": name[:64], "state": state}


def parse_presence(owner: str, value: object) -> Presence | None:
    """A presence record from a peer, or None when it is malformed (newer fields are ignored)."""
    if not isinstance(value, dict):
        return None
    name, state = value.get("name", ""), value.get("state", "")
    if not isinstance(name, str) or len(name) > 64 or state not in _STATES:
        return None
    return Presence(peer_id=owner, name=name, state=state)


async def announce(dht, peer_id: str, name: str, state: str) -> bool:
    """Store this node's presence for PRESENCE_TTL_SECONDS."""
    if not dht.is_alive():
        return False
    expiration = swarm_dht.now() + PRESENCE_TTL_SECONDS
    return bool(await dht.store(PRESENCE_KEY, presence_value(name, state), expiration,
                                subkey=swarm_dht.owner_subkey(dht, peer_id), return_future=True))


async def fetch(dht) -> list[Presence]:
    """Every node present in the swarm (in a private swarm: signed, and members only)."""
    # the same reader the server records use: the latest values, and this node's member list (None: open swarm)
    raw, members = await swarm_dht.read_with_members(dht, [PRESENCE_KEY])
    signed = swarm_dht.owner_marker(dht) is not None
    found = []
    for subkey, value in list(raw.get(PRESENCE_KEY, {}).items())[:MAX_PRESENCE]:
        owner = swarm_dht.subkey_owner(subkey, signed)
        if owner is None or (members is not None and owner not in members):
            continue
        item = parse_presence(owner, value)
        if item is not None:
            found.append(item)
    return found
