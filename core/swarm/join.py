"""The join handshake: a friend with an invite code becomes a member, on the inviter's node.

Over one hivemind stream (`/potluck/join/1`, Noise-encrypted; the joiner's peer id is the authenticated id of
the connection, never a claim in the message), two JSON frames (core/wire/framing.py, no pickle):

    joiner -> inviter  {"op": "join", "version": 1, "swarm_id", "invite_id", "credential": 32 hex,
                        "name": "Bruno's PC", "reach_back": ["/ip4/<joiner>/tcp/<port>/p2p/<id>", ...],
                        "key": base64 public key (its hash must be the connection's peer id)}
    inviter -> joiner  {"op": "welcome", "version": 1, "swarm_id", "swarm_name", "model_id", "model_revision",
                        "secret": base64, "epoch", "proof", "membership": <member list, format 2>,
                        "bootstrap": [multiaddrs]}
                    or {"op": "error", "code": one of JoinError.CODES, "message": for the user}

The inviter first dials the joiner's `reach_back` addresses (a plain TCP connect): a PC that can be reached but
cannot be dialled back (Tailscale node sharing) is told so before the code is used up. Then it redeems the
credential in its store (checks credential, cancel, expiry, uses left; consumes one use and records who used
it), admits the joiner to the member list with an admission signed by its own key (naming the invite), and
answers with the current swarm secret (with its epoch and the owner's proof, core/swarm/rotation.py) and the
list. If the welcome is lost on the way, the same joiner may ask again with the same code: an active member
presenting a valid credential of this swarm is welcomed again without using the code up a second time.

Streams are counted before and after the request separately: a peer may hold at most MAX_PENDING_PER_PEER
streams that have not sent a request yet (more are closed at once), all peers together MAX_PENDING; only joins
whose code checked out take one of the MAX_CONCURRENT_JOINS slots (reach-back probe and store), so idle streams
of an outsider never make a friend's join "busy".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from potluck.core.errors import PotluckError
from potluck.core.swarm import membership as ms
from potluck.core.swarm import reachability, signing
from potluck.core.swarm.invite import Invite, format_utc, parse_multiaddr
from potluck.core.swarm.secure import SwarmNode, store_lock
from potluck.core.swarm.store import RedeemError
from potluck.core.wire import framing

log = logging.getLogger(__name__)

JOIN_PROTOCOL = "/potluck/join/1"
JOIN_VERSION = 1
REQUEST_TIMEOUT_SECONDS = 10.0  # the joiner must send its request this soon after opening the stream
REPLY_TIMEOUT_SECONDS = 20.0  # the inviter probes back (3 s per address) and writes its store before answering
MAX_REQUEST_BYTES = 4096
MAX_REPLY_BYTES = 1 << 20  # a welcome carries the member list: up to 1000 members
MAX_CONCURRENT_JOINS = 4  # joins with a valid code being probed and admitted at once; more are answered "busy"
MAX_PENDING_PER_PEER = 2  # streams one peer may hold open before its request arrives
MAX_PENDING = 64  # such streams from all peers together
MAX_REACH_BACK = 8
_HEX = re.compile(r"[0-9a-f]+")


class JoinError(PotluckError, RuntimeError):
    """A join was refused or failed; `code` says why (for programs), str(error) says it for the user."""

    CODES = ("unknown", "invalid", "cancelled", "expired", "used_up", "revoked", "no_reach_back", "unreachable",
             "busy", "bad_request", "protocol", "not_allowed")

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code if code in self.CODES else "protocol"


@dataclass(frozen=True)
class JoinRequest:
    swarm_id: str
    invite_id: str
    credential: bytes = field(repr=False)
    name: str
    reach_back: tuple[str, ...]
    key: str = ""  # the joiner's public key (base64 SPKI), so others can check what it signs

    def to_message(self) -> dict[str, Any]:
        return {"op": "join", "version": JOIN_VERSION, "swarm_id": self.swarm_id, "invite_id": self.invite_id,
                "credential": self.credential.hex(), "name": self.name, "reach_back": list(self.reach_back),
                "key": self.key}

    @classmethod
    def from_message(cls, m: Any) -> "JoinRequest":
        """Validate a request from the network. Raises JoinError("bad_request", ...)."""
        _check(isinstance(m, dict) and m.get("op") == "join", "expected a join request")
        _check(m.get("version") == JOIN_VERSION, f"unsupported join version {m.get('version')!r}")
        swarm_id, invite_id, credential = m.get("swarm_id"), m.get("invite_id"), m.get("credential")
        _check(isinstance(swarm_id, str) and len(swarm_id) == 16 and _HEX.fullmatch(swarm_id), "bad swarm_id")
        _check(isinstance(invite_id, str) and len(invite_id) == 12 and _HEX.fullmatch(invite_id), "bad invite_id")
        _check(isinstance(credential, str) and len(credential) == 32 and _HEX.fullmatch(credential), "bad credential")
        name = m.get("name", "")
        _check(isinstance(name, str) and len(name) <= 64 and name.isprintable(), "name: at most 64 printable characters")
        reach_back = m.get("reach_back")
        _check(isinstance(reach_back, list) and 0 < len(reach_back) <= MAX_REACH_BACK
               and all(isinstance(a, str) and len(a) < 256 for a in reach_back), "reach_back: 1 to 8 multiaddrs")
        for maddr in reach_back:
            try:
                reachability.host_port(maddr)
            except ValueError as e:
                raise JoinError("bad_request", f"reach_back: {e}") from None
        key = m.get("key", "")
        _check(isinstance(key, str) and len(key) <= 1200, "key: a base64 public key")
        return cls(swarm_id, invite_id, bytes.fromhex(credential), name.strip(), tuple(reach_back), key)


@dataclass(frozen=True)
class Welcome:
    swarm_id: str
    swarm_name: str
    model_id: str
    model_revision: str
    secret: bytes = field(repr=False)
    membership: dict[str, Any] = field(repr=False)  # core.swarm.membership.to_wire
    bootstrap: tuple[str, ...] = ()
    epoch: int = 0  # which secret this is (core/swarm/rotation.py)
    proof: str = ""  # the owner's signature over it ("" at epoch 0)

    def to_message(self) -> dict[str, Any]:
        return {"op": "welcome", "version": JOIN_VERSION, "swarm_id": self.swarm_id, "swarm_name": self.swarm_name,
                "model_id": self.model_id, "model_revision": self.model_revision,
                "secret": base64.b64encode(self.secret).decode("ascii"), "membership": self.membership,
                "bootstrap": list(self.bootstrap), "epoch": self.epoch, "proof": self.proof}

    @classmethod
    def from_message(cls, m: Any, invite: Invite, peer_id: str) -> tuple["Welcome", ms.Membership]:
        """Validate the inviter's welcome for `invite`, received by `peer_id`. Raises JoinError("protocol", ...)."""
        def need(ok: Any, what: str) -> None:
            if not ok:
                raise JoinError("protocol", f"the inviter's answer is malformed ({what}); is its Potluck up to date?")

        need(isinstance(m, dict) and m.get("op") == "welcome" and m.get("version") == JOIN_VERSION, "not a welcome")
        need(m.get("swarm_id") == invite.swarm_id, "another swarm")
        for key in ("swarm_name", "model_id", "model_revision"):
            need(isinstance(m.get(key), str) and len(m[key]) <= 200, key)
        try:
            secret = base64.b64decode(m.get("secret", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            secret = b""
        need(16 <= len(secret) <= 1024, "secret")
        bootstrap = m.get("bootstrap", [])
        need(isinstance(bootstrap, list) and len(bootstrap) <= 16, "bootstrap")
        good = []
        for maddr in bootstrap:
            try:
                parse_multiaddr(maddr)
                good.append(maddr)
            except Exception:  # an address this version cannot use is skipped, not fatal
                continue
        try:
            membership = ms.from_wire(m.get("membership"), swarm_id=invite.swarm_id)
        except ms.MembershipError as e:
            raise JoinError("protocol", f"the inviter's member list does not check out: {e}") from None
        need(ms.is_active_member(membership, peer_id), "this PC is not on the member list it sent")
        epoch, proof = m.get("epoch", 0), m.get("proof", "")
        need(isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 and isinstance(proof, str), "epoch")
        need(epoch == 0 or ms.secret_proof_is_valid(membership, epoch, secret, proof), "the owner's proof of the secret")
        return cls(invite.swarm_id, m["swarm_name"] or invite.swarm_name, m["model_id"] or invite.model_id,
                   m["model_revision"], secret, m["membership"], tuple(good), epoch, proof), membership


# ---- the inviter's side ---------------------------------------------------------------------------------------------
class JoinService:
    """Answers `/potluck/join/1` on a member's node. `stats` counts outcomes ("welcomed", "used_up", ...)."""

    def __init__(self, node: SwarmNode, own_maddrs: Callable[[], Sequence[str]],
                 on_joined: Callable[[], None] | None = None, *,
                 probe: Callable[[Sequence[str]], Awaitable[list[str]]] = reachability.reachable,
                 clock: Callable[[], float] = time.time):
        self.node, self.own_maddrs, self.on_joined = node, own_maddrs, on_joined
        self.probe, self.clock = probe, clock
        self.stats: Counter[str] = Counter()
        self._active = 0  # joins past the code checks, being probed and admitted
        self._pending: Counter[str] = Counter()  # streams per peer that have not sent their request yet

    async def register(self, p2p) -> None:
        await p2p.add_binary_stream_handler(JOIN_PROTOCOL, self.handle)

    async def handle(self, stream_info, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_id = stream_info.peer_id.to_base58()  # authenticated by the connection's Noise handshake
        if self._pending[peer_id] >= MAX_PENDING_PER_PEER or sum(self._pending.values()) >= MAX_PENDING:
            self.stats["too_many_streams"] += 1
            _close(writer)  # before reading anything: a peer cannot pile up idle streams here
            return
        try:
            try:
                self._pending[peer_id] += 1
                try:
                    body = await asyncio.wait_for(_receive(reader, MAX_REQUEST_BYTES), REQUEST_TIMEOUT_SECONDS)
                finally:
                    self._pending[peer_id] -= 1
                    if self._pending[peer_id] <= 0:
                        del self._pending[peer_id]
                request = JoinRequest.from_message(_decode(body, MAX_REQUEST_BYTES))
                reply = (await self.decide(peer_id, request)).to_message()
                self.stats["welcomed"] += 1
            except JoinError as e:
                self.stats[e.code] += 1
                log.info("join from %s refused: %s", peer_id[-8:], e.code)
                reply = {"op": "error", "code": e.code, "message": str(e)}
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                self.stats["bad_request"] += 1
                return
            except Exception as e:  # a bug or an unreadable store: answer, and keep the node running
                log.exception("join from %s failed", peer_id[-8:])
                self.stats["failed"] += 1
                reply = {"op": "error", "code": "protocol", "message": "the inviter's PC could not process the join "
                                                                       f"({type(e).__name__}); ask it to check its log"}
            await asyncio.wait_for(framing.send(writer, framing.json_frame(reply)), REQUEST_TIMEOUT_SECONDS)
            await asyncio.wait_for(reader.read(MAX_REQUEST_BYTES), 1.0)  # let the joiner close first: closing with
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):  # unread bytes can lose the reply
            pass
        finally:
            _close(writer)

    async def decide(self, peer_id: str, request: JoinRequest) -> Welcome:
        """Check, probe back, redeem and admit; the Welcome for `peer_id`, or JoinError saying why not."""
        node, now = self.node, self.clock()
        record = next((r for r in node.store.get(node.swarm_id).invites if r.invite_id == request.invite_id), None)
        if request.swarm_id != node.swarm_id or record is None:
            raise JoinError("unknown", "This code is not known here: it was made on another PC or was forgotten. "
                                       "Ask your friend for a new one")
        given = hashlib.sha256(request.credential).hexdigest()
        if not hmac.compare_digest(given, record.credential_sha256):
            raise JoinError("invalid", "This code is not valid: check that you pasted the whole code")
        current = node.membership()
        member = current.get(peer_id) if current is not None else None
        if member is not None and member.revoked:
            raise JoinError("revoked", "This PC's identity was removed from the swarm; join with a new code "
                                       "(Potluck makes a new identity for it)")
        if member is None:
            _check_record(record, now)
            refusal = ms.may_invite(current, node.peer_id) if current is not None else "no member list"
            if refusal:
                raise JoinError("not_allowed", f"The inviter's PC cannot admit anyone now ({refusal}): ask an admin "
                                               "for a code")
            if request.key and signing.peer_id_of_key(request.key) != peer_id:
                raise JoinError("bad_request", "the key sent is not this PC's identity")
            if self._active >= MAX_CONCURRENT_JOINS:
                raise JoinError("busy", "The inviter's PC is busy with other joins: try again in a minute")
            self._active += 1
            try:
                reached = await self.probe(list(request.reach_back))
                if not reached:
                    raise JoinError("no_reach_back", "The inviter's PC could not connect back to this PC at "
                                                     + ", ".join(request.reach_back))
                await asyncio.to_thread(self._admit, peer_id, request, now)
            finally:
                self._active -= 1
            if self.on_joined is not None:
                self.on_joined()
        else:
            self.stats["welcomed_again"] += 1
        info = node.store.get(node.swarm_id)
        own = [m for m in self.own_maddrs()]
        others = [m for m in info.bootstrap if m not in own and not m.endswith("/p2p/" + peer_id)]
        return Welcome(info.swarm_id, info.name, info.model_id, info.model_revision, node.secret(), info.membership,
                       tuple((own + others)[:8]), info.secret_epoch, info.secret_proof)

    def _admit(self, peer_id: str, request: JoinRequest, now: float) -> None:
        node = self.node
        name = request.name or f"member {peer_id[-6:]}"
        with store_lock(node.store):
            record = next((r for r in node.store.get(node.swarm_id).invites if r.invite_id == request.invite_id), None)
            if record is not None:
                _check_record(record, now)  # cancelled meanwhile (a revocation of its maker or a user)
            try:
                admitted = ms.add_member(node.store.membership(node.swarm_id), peer_id, name, node.signer, now,
                                         key=request.key, invite=request.invite_id)
            except ms.MembershipError as e:
                raise JoinError("bad_request", f"cannot admit this PC: {e}") from None
            try:
                node.store.redeem(request.invite_id, request.credential, now=now, peer_id=peer_id)
            except RedeemError as e:
                raise JoinError("used_up" if "already been used" in str(e) else "invalid", str(e)) from None
            node.store.save_membership(node.swarm_id, admitted)


def _check_record(record, now: float) -> None:
    if record.cancelled:
        raise JoinError("cancelled", "This code was cancelled by the person who made it: ask for a new one")
    if now >= record.expires_at:
        raise JoinError("expired", f"This code has expired on {format_utc(record.expires_at)}: ask for a new one")
    if record.uses_left is not None and record.uses_left <= 0:
        raise JoinError("used_up", f"This code has already been used ({record.max_uses} of {record.max_uses} "
                                   "joins): ask your friend for a new one")


# ---- the joiner's side ----------------------------------------------------------------------------------------------
async def request_join(invite: Invite, identity_path: Path, host: str, name: str, *, port: int = 0,
                       timeout: float = REPLY_TIMEOUT_SECONDS) -> tuple[Welcome, ms.Membership]:
    """Join through the invite's bootstrap peers, as the identity in `identity_path` listening on host:port.
    Raises JoinError with advice (unreachable, one-way reachability, used-up code, ...)."""
    from hivemind.p2p import P2P

    from potluck.core.swarm.admission import tailnet_p2p_kwargs
    from potluck.core.swarm.streams import PeerUnreachableError, close_writer, open_stream

    reached = await reachability.reachable(list(invite.bootstrap))
    if not reached:
        maddr = invite.bootstrap[0]
        advice = reachability.explain(maddr, False, False, sharing=reachability.sharing_with(maddr))
        raise JoinError("unreachable", advice.message)
    from potluck.core.swarm.dht import private_umask

    with private_umask():  # p2pd's control socket and ours: this user only (core/swarm/dht.py)
        p2p = await P2P.create(identity_path=str(identity_path), **tailnet_p2p_kwargs(host, port))
    try:
        own = _with_peer_id([str(m) for m in await p2p.get_visible_maddrs()], p2p.peer_id.to_base58())
        key = signing.Signer.from_identity(identity_path).public_key
        request = JoinRequest(invite.swarm_id, invite.invite_id, invite.credential, name, tuple(own[:MAX_REACH_BACK]),
                              key)
        last: JoinError | None = None
        for maddr in reached:
            _, _, peer = parse_multiaddr(maddr)
            writer = None
            try:
                reader, writer = await open_stream(p2p, peer, JOIN_PROTOCOL, [maddr], timeout_seconds=timeout)
                await framing.send(writer, framing.json_frame(request.to_message()))
                reply = _decode(await asyncio.wait_for(_receive(reader, MAX_REPLY_BYTES), timeout), MAX_REPLY_BYTES)
            except (PeerUnreachableError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError,
                    framing.WireError) as e:
                last = JoinError("unreachable", f"{maddr} accepted a connection but did not answer the join ({e or 'timed out'}): "
                                                "is Potluck running there, in this swarm?")
                continue
            finally:
                close_writer(writer)
            if isinstance(reply, dict) and reply.get("op") == "error":
                code, message = str(reply.get("code")), str(reply.get("message", "refused"))[:500]
                if code == "no_reach_back":
                    advice = reachability.explain(maddr, True, False, sharing=reachability.sharing_with(maddr))
                    raise JoinError(code, advice.message)
                raise JoinError(code, message)
            return Welcome.from_message(reply, invite, p2p.peer_id.to_base58())
        raise last or JoinError("unreachable", "no bootstrap peer answered")
    finally:
        await p2p.shutdown()


def _with_peer_id(maddrs: list[str], peer_id: str) -> list[str]:
    return [m if "/p2p/" in m else f"{m}/p2p/{peer_id}" for m in maddrs]


async def _receive(reader: asyncio.StreamReader, limit: int) -> bytes:
    """One frame, refused before it is read if it is longer than `limit`."""
    try:
        return await framing.receive(reader, limit)
    except framing.WireError as e:
        raise JoinError("bad_request", str(e)) from None


def _decode(body: bytes, limit: int) -> Any:
    try:
        return framing.parse_json_frame(body, limit)
    except framing.WireError as e:
        raise JoinError("bad_request", str(e)) from None


def _check(ok: Any, message: str) -> None:
    if not ok:
        raise JoinError("bad_request", message)


def _close(writer) -> None:
    try:
        writer.close()
    except Exception:  # the stream may already be gone
        pass
