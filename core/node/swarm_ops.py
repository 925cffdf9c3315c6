"""The node's private network as the swarm page needs it, and the `swarm` event (core/node/swarm_commands.py runs
the page's commands).

- `SwarmNetwork`: the private network (core/node/private.py) plus: it opens a stored swarm by id (`swarm_id` in the
  settings, how the app names the swarm it serves after a join or a switch), records the model's identity when it
  creates a swarm from a local file or folder (a friend's own copy is checked against it), and says what to do in
  words that point at the swarm page.
- `swarm_facts` (a store read, on a thread) and `build_view` (pure): the `swarm` event.
- `check_model_path`, `check_same_model`: a friend's own copy of the swarm's model, checked before and after it
  is opened, with words that say what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass

from potluck.core import protocol
from potluck.core import secrets as core_secrets
from potluck.core.node.config import NodeConfig
from potluck.core.node.network import NodeNetwork
from potluck.core.node.plan import NodeSetupError
from potluck.core.node.private import INVITE_ENV, PrivateNetwork, swarm_name_for
from potluck.core.swarm import lifecycle, secure
from potluck.core.swarm import membership as ms
from potluck.core.swarm.store import SwarmInfo, SwarmNotFound, SwarmStore

log = logging.getLogger(__name__)

FACTS_PERIOD_SECONDS = 4.0  # the store is re-read at most this often for the view and the removal check
LEAVE_PUBLISH_SECONDS = 10.0  # how long leaving waits for the member list saying so to reach the swarm
NOT_IN_A_SWARM = "Not in a swarm. Join one with a code, or start a new one."


def is_path(model: str) -> bool:
    """Whether `model` names a file or folder (rather than a Hugging Face id like org/name)."""
    text = model.strip()
    return text.startswith(("/", "~", ".", "\\")) or re.match(r"[A-Za-z]:[\\/]", text) is not None


def swarm_model_uid(info: SwarmInfo) -> str:
    """The model identity (name@revision) a swarm made from a local model recorded, or ''."""
    return info.model_revision if is_path(info.model_id) and "@" in info.model_revision else ""


def secret_words(swarm_id: str) -> str:
    """Where the swarm secret really is, in words."""
    try:
        _secret, location = core_secrets.load_secret(swarm_id)
    except core_secrets.SecretStoreError:
        return "nowhere on this PC (join the swarm again)"
    return "the system keyring" if location.kind == "keyring" else f"a private file ({location.path})"


# ---- the network ------------------------------------------------------------------------------------------------
class SwarmNetwork(PrivateNetwork):
    model_uid = ""  # the opened model's identity, set by the controller; recorded when this PC creates the swarm

    def _stored(self, fall_back: bool) -> str:
        """The settings' swarm_id when this PC is an active member of that stored swarm, else ''. A PC removed
        from it gets SwarmAccessError, unless `fall_back` (a join with a new code follows)."""
        if not self.config.swarm_id:
            return ""
        try:
            return secure.open_swarm(self.config.swarm_id, SwarmStore()).swarm_id
        except SwarmNotFound:
            return ""
        except secure.SwarmAccessError:
            if fall_back:
                return ""
            raise

    def ensure(self):
        """The DHT (see PrivateNetwork.ensure); the port it got is remembered, so that the addresses the other
        members know stay good when this node starts again."""
        dht = super().ensure()
        if self.swarm is not None:
            try:
                lifecycle.remember_port(self.swarm.swarm_id, self.maddrs())
            except OSError as exc:
                log.info("could not remember this node's port: %s", exc)
        return dht

    def _join(self) -> str:
        return self._stored(fall_back=bool(self._environ.get(INVITE_ENV, "").strip())) or super()._join()

    def _create(self) -> str:
        stored = self._stored(fall_back=False)
        if stored:
            return stored
        name = swarm_name_for(self.config)
        try:
            return secure.open_swarm(name, SwarmStore()).swarm_id
        except SwarmNotFound:
            pass
        if not self.config.model:
            raise NodeSetupError("No model is chosen for the new swarm. Start a new swarm from the Swarm page and "
                                 "choose its model there.")
        revision = self.model_uid if is_path(self.config.model) else ""
        return lifecycle.create_swarm(name, self.config.model, revision, member_name=self.config.pc_name,
                                      quant=self.config.quant).info.swarm_id


def make_network(config: NodeConfig, environ=os.environ) -> NodeNetwork:
    """The network for these settings: a private swarm (create, join), or an open one (plain)."""
    return SwarmNetwork(config, environ) if config.mode in ("create", "join") else NodeNetwork(config, environ)


def check_model_path(network, config: NodeConfig) -> None:
    """Before opening: NodeSetupError in words that say where to fix it when the model to serve is a path that is
    not on this PC (a friend's path from the invite, or a copy that moved)."""
    model, swarm = network.model, getattr(network, "swarm", None)
    if not isinstance(network, PrivateNetwork) or not is_path(model) or os.path.exists(os.path.expanduser(model)):
        return
    if swarm is None:  # a new swarm, not made yet
        raise NodeSetupError(f"There is no model at {model}. Put it back there, or start the swarm again with the "
                             "model's folder or .gguf file (Swarm page, Start a new swarm).")
    if swarm.info.created_here:
        raise NodeSetupError(f"This swarm's model is not at {model} any more. Put it back, or choose where it is now "
                             "on the Swarm page (Your copy of the model).")
    if config.model:
        raise NodeSetupError(f"Your copy of the model is not at {model} any more. Choose where it is now on the "
                             "Swarm page (Your copy of the model).")
    raise NodeSetupError(f"The swarm's model is a file on the PC that created the swarm ({model}). Choose your "
                         "own copy of that model on the Swarm page (Your copy of the model).")


def check_same_model(network, model_uid: str) -> None:
    """After opening: NodeSetupError when this PC's model is not the one the swarm recorded."""
    swarm = getattr(network, "swarm", None)
    expected = swarm_model_uid(swarm.info) if swarm is not None else ""
    if not expected or expected == model_uid:
        return
    (name, revision), (got_name, got_revision) = expected.rsplit("@", 1), model_uid.rsplit("@", 1)
    if revision == got_revision:
        raise NodeSetupError(f"Your copy holds the swarm's model under another name ({got_name}; the swarm's is "
                             f"{name}). Potluck names a model folder by its name: rename the folder to {name}.")
    raise NodeSetupError(f"Your copy is not the swarm's model: the swarm runs {expected}, your copy is {model_uid}. "
                         "Choose a copy of the same model on the Swarm page (Your copy of the model).")


# ---- the view ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SwarmFacts:
    """What the store says, read on a thread."""
    info: SwarmInfo | None
    membership: ms.Membership | None
    own_peer_id: str
    known: tuple[protocol.KnownSwarm, ...]
    secret_where: str = ""


def swarm_facts(swarm_id: str, store: SwarmStore | None = None) -> SwarmFacts:
    store = store or SwarmStore()
    known = []
    for info in store.list_swarms():
        own = lifecycle.own_peer_id(info.swarm_id)
        try:
            membership = store.membership(info.swarm_id)
        except Exception:  # a damaged list: shown as not removed; the node says more when it opens it
            membership = None
        removed = bool(own) and membership is not None and membership.get(own) is not None \
            and not ms.is_active_member(membership, own)
        known.append(protocol.KnownSwarm(info.swarm_id, info.name, info.model_id, info.created_here, removed))
    if not swarm_id or swarm_id not in {k.swarm_id for k in known}:
        return SwarmFacts(None, None, "", tuple(known))
    return SwarmFacts(store.get(swarm_id), store.membership(swarm_id), lifecycle.own_peer_id(swarm_id), tuple(known),
                      secret_words(swarm_id))


def build_view(facts: SwarmFacts, *, servers: tuple[protocol.Member, ...], last_seen: dict[str, float],
               listen_host: str, model_here: str, request_id: str = "") -> protocol.SwarmView:
    """The `swarm` event: the member list (role, active) joined with the swarm's records (`servers`: state,
    blocks, online) and when each was last seen online."""
    info = facts.info
    if info is None:
        return protocol.SwarmView(known=facts.known, request_id=request_id)
    by_peer = {m.peer_id: m for m in servers}
    members = []
    for entry in facts.membership.members if facts.membership is not None else ():
        server = by_peer.get(entry.peer_id)
        role = getattr(entry, "role", "") or getattr(server, "role", "") or "member"  # roles: core/swarm/membership
        role = getattr(role, "value", role)
        online = server is not None and server.online and not entry.revoked
        members.append(protocol.SwarmMember(
            peer_id=entry.peer_id, name=entry.name or (server.name if server else ""), role=str(role),
            active=not entry.revoked, online=online, state=server.state if online else "offline",
            start_block=server.start_block if online else 0, end_block=server.end_block if online else 0,
            last_seen=last_seen.get(entry.peer_id, 0.0), this_pc=entry.peer_id == facts.own_peer_id))
    me = facts.membership.get(facts.own_peer_id) if facts.membership is not None else None
    invites = tuple(protocol.InviteInfo(r.invite_id, r.expires_at, r.max_uses or 0, r.uses_left or 0, r.cancelled)
                    for r in info.invites)
    model = model_here or info.model_id
    return protocol.SwarmView(
        swarm_id=info.swarm_id, name=info.name, model_id=info.model_id, model_uid=swarm_model_uid(info),
        model_here=model, model_is_path=is_path(info.model_id),
        model_found=not is_path(model) or os.path.exists(os.path.expanduser(model)), created_here=info.created_here,
        peer_id=facts.own_peer_id, this_pc_removed=me is not None and me.revoked, listen_host=listen_host,
        secret_where=facts.secret_where, request_id=request_id, members=tuple(members), invites=invites,
        known=facts.known)


def essentials(view: protocol.SwarmView) -> protocol.SwarmView:
    """The view without what changes every tick (last seen), to decide whether it is worth sending."""
    return dataclasses.replace(view, members=tuple(dataclasses.replace(m, last_seen=0.0) for m in view.members))
