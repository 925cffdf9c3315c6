"""Rotating the swarm secret after a revocation, and handing the new one to the members who remain.

A revoked PC still knows the secret that signs DHT access tokens. Member checks refuse it anyway, but the secret
should not outlive the trust it stood for. So the owner's node, as soon as its list holds a revocation its
current secret does not cover (`needs_rotation`), makes a new secret (epoch + 1) and signs a *proof*: its
signature over (swarm id, epoch, SHA-256 of the secret). It installs the secret in its own DHT (old tokens are
still accepted for `grace_seconds`, one membership period), then offers it to every active member over their
authenticated connections (`/potluck/secret/1`, Noise-encrypted, one JSON frame each way):

    member -> member  {"op": "offer", "swarm_id", "epoch", "secret": base64, "proof", "membership"}
                   or {"op": "ask", "swarm_id", "epoch"}          (I have this epoch; anything newer?)
    answer            {"op": "ok"} | {"op": "current", "epoch"}
                   or {"op": "secret", "epoch", "secret", "proof", "membership"}
                   or {"op": "error", "code": "not_a_member" | "bad_request"}

A secret always travels with the sender's member list, and the taker merges that list before it stores the
secret: a member that learns the new secret has also learnt the revocation that caused it, so it never passes
the secret on to the revoked peer (which may still be listed as active in a copy that has not synced yet).

Any member may pass the newest secret on, so a member that was offline gets it from whoever it meets first: each
node asks one known member every period (and all of them when it starts). Only active members of the answerer's
list are told; a secret is taken only with a valid proof by the owner in the taker's own list, so a hostile
member can withhold a secret but never plant one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import logging
import secrets as std_secrets
import time
from typing import Callable, Mapping, Sequence

from potluck.core.swarm import membership as ms
from potluck.core.swarm.secure import SwarmNode, store_lock
from potluck.core.swarm.signing import Signer
from potluck.core.swarm.store import SECRET_BYTES, StoreError
from potluck.core.swarm.streams import close_writer, open_stream
from potluck.core.wire import framing

log = logging.getLogger(__name__)

SECRET_PROTOCOL = "/potluck/secret/1"
MAX_FRAME_BYTES = 1 << 20  # a secret travels with the member list: up to MAX_MEMBERS entries
TIMEOUT_SECONDS = 5.0
MAX_STREAMS_PER_PEER = 2  # open secret streams one peer may hold at once


def make_proof(owner: Signer, swarm_id: str, epoch: int, secret: bytes) -> str:
    return owner.sign(ms.secret_proof_message(swarm_id, epoch, secret))


def revoked_count(m: ms.Membership | None) -> int:
    return 0 if m is None else sum(1 for x in m.members if x.revoked)


def needs_rotation(node: SwarmNode) -> bool:
    """The owner's node rotates when its list holds more revoked members than its current secret excludes."""
    m = node.membership()
    return m is not None and m.owner == node.peer_id and revoked_count(m) > node.store.get(node.swarm_id).secret_covers


def rotate(node: SwarmNode) -> tuple[bytes, int, str]:
    """Make and store a new secret on the owner's PC; returns (secret, epoch, proof)."""
    with store_lock(node.store):
        info, m = node.store.get(node.swarm_id), node.membership()
        if m is None or m.owner != node.peer_id:
            raise StoreError("only the swarm's owner makes a new secret")
        secret, epoch = std_secrets.token_bytes(SECRET_BYTES), info.secret_epoch + 1
        proof = make_proof(node.signer, node.swarm_id, epoch, secret)
        node.store.set_secret(node.swarm_id, secret, epoch, proof, covers=revoked_count(m))
    log.warning("made swarm secret number %d after a revocation; handing it to the members", epoch)
    return secret, epoch, proof


class SecretService:
    """Answers `/potluck/secret/1` and hands out, or asks for, newer secrets. `on_secret(secret)` is called on the
    event loop after a newer secret was stored (the node installs it in its DHT). `stats` counts outcomes."""

    def __init__(self, node: SwarmNode, on_secret: Callable[[bytes], None] = lambda secret: None):
        self.node, self.on_secret = node, on_secret
        self.stats: collections.Counter[str] = collections.Counter()
        self._streams: collections.Counter[str] = collections.Counter()

    async def register(self, p2p) -> None:
        await p2p.add_binary_stream_handler(SECRET_PROTOCOL, self.handle)

    # ---- answering ---------------------------------------------------------------------------------------------
    async def handle(self, stream_info, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_id = stream_info.peer_id.to_base58()  # authenticated by the connection
        if self._streams[peer_id] >= MAX_STREAMS_PER_PEER:
            close_writer(writer)
            return
        self._streams[peer_id] += 1
        try:
            request = framing.parse_json_frame(
                await asyncio.wait_for(framing.receive(reader, MAX_FRAME_BYTES), TIMEOUT_SECONDS), MAX_FRAME_BYTES)
            reply = await asyncio.to_thread(self.answer, peer_id, request)
            if reply.get("op") == "ok":
                self.on_secret(self.node.secret())
            await asyncio.wait_for(framing.send(writer, framing.json_frame(reply)), TIMEOUT_SECONDS)
            await asyncio.wait_for(reader.read(1), 1.0)  # let the asker close first
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, RuntimeError, framing.WireError):
            self.stats["bad_stream"] += 1
        finally:
            self._streams[peer_id] -= 1
            if self._streams[peer_id] <= 0:
                del self._streams[peer_id]
            close_writer(writer)

    def answer(self, peer_id: str, request: Mapping) -> dict:
        """The reply to `request` from the member `peer_id` (blocking: reads and maybe writes the store)."""
        node = self.node
        op, epoch = request.get("op"), request.get("epoch")
        if request.get("swarm_id") != node.swarm_id or not isinstance(epoch, int) or isinstance(epoch, bool):
            return self._count({"op": "error", "code": "bad_request"})
        if not ms.is_active_member(node.membership(), peer_id):
            return self._count({"op": "error", "code": "not_a_member"})
        info = node.store.get(node.swarm_id)
        if op == "ask":
            if epoch < info.secret_epoch:
                return self._count({"op": "secret", "epoch": info.secret_epoch, "proof": info.secret_proof,
                                    "secret": base64.b64encode(node.secret()).decode("ascii"),
                                    "membership": info.membership})
            return self._count({"op": "current", "epoch": info.secret_epoch})
        if op == "offer":
            return self._count({"op": "ok"} if self.take(request) else {"op": "current", "epoch": info.secret_epoch})
        return self._count({"op": "error", "code": "bad_request"})

    def take(self, message: Mapping) -> bool:
        """Store the secret in an offer or answer if it is newer than ours and the owner's proof holds."""
        node, epoch, proof = self.node, message.get("epoch"), message.get("proof")
        try:
            secret = base64.b64decode(message.get("secret", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            return False
        with store_lock(node.store):
            if not isinstance(epoch, int) or epoch <= node.store.get(node.swarm_id).secret_epoch:
                return False
            current = node.membership()
            if not ms.secret_proof_is_valid(current, epoch, secret, proof if isinstance(proof, str) else ""):
                self.stats["bad_proof"] += 1
                log.warning("refused a swarm secret without the owner's proof")
                return False
            try:  # first what the sender knows (the revocation that made this secret, at least)
                sent = ms.from_wire(message.get("membership"), swarm_id=node.swarm_id, owner=current.owner)
                node.store.save_membership(node.swarm_id, ms.merge(current, sent))
            except ms.MembershipError as e:
                log.warning("a new secret came with a member list that does not check out (%s); taking the secret",
                            e)
            node.store.set_secret(node.swarm_id, secret, epoch, proof)
        log.info("now using swarm secret number %d", epoch)
        self.stats["taken"] += 1
        return True

    def _count(self, reply: dict) -> dict:
        self.stats[reply.get("code") or reply["op"]] += 1
        return reply

    # ---- asking and offering -------------------------------------------------------------------------------------
    async def exchange(self, p2p, peer_id: str, addrs: Sequence[str], message: dict) -> dict | None:
        """Send one request to `peer_id`'s secret handler; its answer, or None if it could not be reached."""
        writer = None
        try:
            reader, writer = await open_stream(p2p, peer_id, SECRET_PROTOCOL, [a.rsplit("/p2p/", 1)[0] for a in addrs],
                                               timeout_seconds=TIMEOUT_SECONDS)
            await asyncio.wait_for(framing.send(writer, framing.json_frame(message)), TIMEOUT_SECONDS)
            body = await asyncio.wait_for(framing.receive(reader, MAX_FRAME_BYTES), TIMEOUT_SECONDS)
            return framing.parse_json_frame(body, MAX_FRAME_BYTES)
        except Exception as e:  # unreachable, gone or garbled: another member or the next period will do
            log.debug("secret exchange with %s failed: %s", peer_id[-8:], e)
            return None
        finally:
            close_writer(writer)

    async def ask(self, p2p, peers: Mapping[str, Sequence[str]]) -> bool:
        """Ask these members (peer id -> addresses) for a newer secret; True if one was taken."""
        epoch = self.node.store.get(self.node.swarm_id).secret_epoch
        request = {"op": "ask", "swarm_id": self.node.swarm_id, "epoch": epoch}
        for peer_id, addrs in peers.items():
            reply = await self.exchange(p2p, peer_id, addrs, request)
            if isinstance(reply, dict) and reply.get("op") == "secret" and await asyncio.to_thread(self.take, reply):
                self.on_secret(self.node.secret())
                return True
        return False

    async def hand_out(self, p2p, peers: Mapping[str, Sequence[str]], secret: bytes, epoch: int, proof: str) -> int:
        """Offer a new secret to these members at once; returns how many took it or had it already."""
        offer = {"op": "offer", "swarm_id": self.node.swarm_id, "epoch": epoch, "proof": proof,
                 "secret": base64.b64encode(secret).decode("ascii"),
                 "membership": self.node.store.get(self.node.swarm_id).membership}
        replies = await asyncio.gather(*(self.exchange(p2p, p, a, offer) for p, a in peers.items()))
        return sum(1 for r in replies if isinstance(r, dict) and (r.get("op") == "ok" or r.get("epoch") == epoch))

    async def rotate_if_needed(self, p2p, peers: Mapping[str, Sequence[str]]) -> bool:
        """On the owner's node: rotate after a revocation and hand the new secret out. True if it rotated."""
        if not await asyncio.to_thread(needs_rotation, self.node):
            return False
        secret, epoch, proof = await asyncio.to_thread(rotate, self.node)
        self.on_secret(secret)
        active = {p: a for p, a in peers.items() if ms.is_active_member(self.node.membership(), p)}
        began = time.monotonic()
        took = await self.hand_out(p2p, active, secret, epoch, proof)
        log.warning("secret number %d: %d of %d reachable members took it in %.1f s", epoch, took, len(active),
                    time.monotonic() - began)
        return True
