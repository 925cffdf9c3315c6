"""Admission to a swarm's hivemind DHT, and the checks data handlers make. The only swarm module using hivemind.

Access tokens. Every DHT request and response carries hivemind's AccessToken, signed by its sender's RSA key
(hivemind checks that signature, the request time and a nonce). Ours fill it in as:
    username        = the sender's libp2p peer id (base58)
    public_key      = the sender's RSA public key: the key of its libp2p identity file, so peer id == hash(key)
    expiration_time = unix seconds, TOKEN_LIFETIME_SECONDS ahead
    signature       = HMAC-SHA256(key derived from the swarm secret, swarm id | username | public key | expiry)
A token is valid only if the HMAC is right (the sender knows the swarm secret), it has not expired and does not
claim more than one lifetime ahead, the peer id is the hash of the public key (no one can borrow a member's
identity without its private key), and that peer id is an active member in the list this node has. A request is
also bound to its connection: the token's peer id must be the authenticated peer id of the connection it came
over, so a member's signed request replayed to another node by whoever received it is refused
("wrong_connection"). hivemind hands the authorizer the request only; the connection's P2PContext is read from
hivemind's own RPC wrapper that calls it (hivemind 1.1.12, pinned; when it cannot be found, the request is refused).

Secret rotation (core/swarm/rotation.py). `set_secret` switches a running authorizer to a new secret; tokens made
with the previous one are still accepted for `grace_seconds` (one membership period), then refused.

Revocation. A revoked member still knows the swarm secret, so the secret alone is not enough: every node checks
each request's and response's token against its own member list. Once a node's list marks a peer revoked (the
list is re-read every `membership_refresh_seconds` from its source, or pushed with `push_membership`), that
peer's requests are refused and its responses ignored, whatever token it mints. Tokens also expire after a
minute, so a token captured before a secret rotation stops working soon after.

Peers without the secret, with another swarm's secret, or not on the list, cannot join, read or store: their
requests are answered with nothing and their answers are dropped. This does not protect non-DHT handlers:
each handler must call `is_member(context.remote_id.to_base58(), membership)` before doing any work.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import sys
import time
from collections import Counter
from typing import Any, Callable, Sequence, Union

from hivemind.dht.crypto import RSASignatureValidator
from hivemind.p2p import P2PContext, PeerID
from hivemind.proto import crypto_pb2
from hivemind.proto.auth_pb2 import AccessToken
from hivemind.utils.auth import TokenAuthorizerBase
from hivemind.utils.crypto import RSAPrivateKey, RSAPublicKey

from potluck.core.swarm import membership as ms
from potluck.core.swarm.membership import Membership
from potluck.core.swarm.store import SwarmStore

logger = logging.getLogger(__name__)

TOKEN_LIFETIME_SECONDS = 60.0  # a token is refreshed after half of it
CLOCK_SKEW_SECONDS = 30.0  # how far ahead of our clock a peer's token expiry may be beyond one lifetime
MEMBERSHIP_REFRESH_SECONDS = 5.0  # how often a membership source callable is re-read

MembershipSource = Union[Membership, Callable[[], Union[Membership, None]], None]


def load_identity(identity_path: str) -> RSAPrivateKey:
    """The RSA key of a libp2p identity file written by hivemind (`P2P.generate_identity`)."""
    with open(identity_path, "rb") as f:
        proto = crypto_pb2.PrivateKey.FromString(f.read())
    if proto.key_type != crypto_pb2.KeyType.RSA:
        raise ValueError(f"{identity_path} is not an RSA identity; Potluck needs hivemind's RSA identities")
    key = RSAPrivateKey.__new__(RSAPrivateKey)
    key.__setstate__({"_private_key": proto.data})  # hivemind's own unpickling path: DER, no new key generated
    return key


def peer_id_of(public_key: RSAPublicKey) -> str:
    """The base58 libp2p peer id of an RSA public key (what p2pd derives from the same identity)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key._public_key.public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    proto = crypto_pb2.PublicKey(key_type=crypto_pb2.RSA, data=der).SerializeToString()
    return PeerID(b"\x12\x20" + hashlib.sha256(proto).digest()).to_base58()


def is_member(peer_id: str, membership: Membership | None) -> bool:
    """For data handlers, with the authenticated remote peer id: an active (listed, not revoked) member?"""
    return ms.is_active_member(membership, peer_id)


class SwarmAuthorizer(TokenAuthorizerBase):
    """hivemind DHT authorizer: only active members holding the swarm secret take part (see module doc)."""

    def __init__(self, swarm_id: str, swarm_secret: bytes, identity: RSAPrivateKey, membership: MembershipSource,
                 *, token_lifetime_seconds: float = TOKEN_LIFETIME_SECONDS,
                 membership_refresh_seconds: float = MEMBERSHIP_REFRESH_SECONDS):
        super().__init__(identity)
        self.identity = identity  # the libp2p identity key: signs requests here and DHT records (swarm_dht_kwargs)
        self._swarm_id, self._secret = swarm_id, swarm_secret
        self._key = ms.subkey(swarm_secret, "dht-token")
        self._old_keys: list[tuple[bytes, float]] = []  # (key of a previous secret, monotonic time it ends)
        self._lifetime = float(token_lifetime_seconds)
        self._refresh = float(membership_refresh_seconds)
        self.local_peer_id = peer_id_of(self.local_public_key)
        self._local_key_bytes = self.local_public_key.to_bytes()
        self._source: MembershipSource = membership
        self._membership: Membership | None = None
        self._loaded_at = float("-inf")
        self._peer_ids: dict[bytes, str] = {}  # public key bytes -> peer id, bounded
        self.stats: Counter[str] = Counter()  # "accepted" and one key per refusal reason

    def __reduce__(self):
        """Picklable (hivemind pickles DHT arguments where processes are spawned: macOS, Windows) when the
        membership source is: a Membership, None, or a top-level callable such as StoreMembership."""
        make = functools.partial(SwarmAuthorizer, token_lifetime_seconds=self._lifetime,
                                 membership_refresh_seconds=self._refresh)
        return make, (self._swarm_id, self._secret, self.identity, self._source)

    def set_secret(self, secret: bytes, grace_seconds: float = 0.0) -> None:
        """Sign and check tokens with `secret` from now on; the previous secret's tokens still pass for
        `grace_seconds`."""
        now = time.monotonic()
        self._old_keys = [(k, end) for k, end in self._old_keys if end > now]
        if grace_seconds > 0:
            self._old_keys.append((self._key, now + grace_seconds))
        self._secret, self._key = secret, ms.subkey(secret, "dht-token")
        self._local_access_token = None  # the next request carries a token made with the new secret

    async def validate_request(self, request) -> bool:
        """hivemind's checks (token, request signature, time, nonce), and that the token names the peer this
        request came from (see the module doc)."""
        remote = _calling_peer_id()
        if not await super().validate_request(request):
            return False
        if remote is None or remote != request.auth.client_access_token.username:
            self.stats["wrong_connection"] += 1
            return False
        return True

    def set_membership(self, membership: Membership | None) -> None:
        """Use this list from now on (instead of the source given at construction)."""
        self._source, self._membership, self._loaded_at = membership, membership, time.monotonic()

    def reload_membership(self) -> None:
        """Re-read the membership source at the next check (after the list changed, e.g. a member joined)."""
        self._loaded_at = float("-inf")

    def membership(self) -> Membership | None:
        if isinstance(self._source, Membership) or self._source is None:
            return self._source
        if time.monotonic() - self._loaded_at >= self._refresh:
            try:
                self._membership = self._source()
            except Exception as e:  # keep the last good list; never fail open
                logger.warning("could not reload the member list: %s", e)
            self._loaded_at = time.monotonic()
        return self._membership

    async def get_token(self) -> AccessToken:
        token = AccessToken(username=self.local_peer_id, public_key=self.local_public_key.to_bytes(),
                            expiration_time=f"{time.time() + self._lifetime:.3f}")
        token.signature = self._mac(token)
        return token

    def is_token_valid(self, access_token: AccessToken) -> bool:
        reason = self.refusal_reason(access_token)
        if bytes(access_token.public_key) != self._local_key_bytes:  # our own token is checked on every call
            self.stats[reason or "accepted"] += 1
        return reason is None

    def refusal_reason(self, token: AccessToken, now: float | None = None) -> str | None:
        """None if `token` admits its sender, else a short reason ("bad_signature", "expired", ...)."""
        now = time.time() if now is None else now
        keys = [self._key] + [k for k, end in self._old_keys if end > time.monotonic()]
        if not any(hmac.compare_digest(self._mac(token, key), bytes(token.signature)) for key in keys):
            return "bad_signature"
        try:
            expires = float(token.expiration_time)
        except ValueError:
            return "bad_expiry"
        if not now < expires <= now + self._lifetime + CLOCK_SKEW_SECONDS:
            return "expired"
        if self._peer_id_of_key(bytes(token.public_key)) != token.username:
            return "wrong_identity"
        if token.username == self.local_peer_id:
            return None  # our own token: others judge whether we are still a member
        current = self.membership()
        if current is not None and current.swarm_id != self._swarm_id:
            current = None  # a list for another swarm admits no one here
        member = current.get(token.username) if current is not None else None
        if member is None:
            return "not_member"
        return "revoked" if member.revoked else None

    def does_token_need_refreshing(self, access_token: AccessToken) -> bool:
        try:
            return float(access_token.expiration_time) - time.time() < self._lifetime / 2
        except ValueError:
            return True

    def _mac(self, token: AccessToken, key: bytes | None = None) -> bytes:
        message = b"\n".join([self._swarm_id.encode(), token.username.encode(), bytes(token.public_key),
                              token.expiration_time.encode()])
        return hmac.new(key or self._key, message, hashlib.sha256).digest()

    def _peer_id_of_key(self, public_key: bytes) -> str | None:
        if public_key not in self._peer_ids:
            try:
                peer_id = peer_id_of(RSAPublicKey.from_bytes(public_key))
            except Exception:  # not an RSA key in OpenSSH form
                return None
            if len(self._peer_ids) >= 4096:
                self._peer_ids.clear()
            self._peer_ids[public_key] = peer_id
        return self._peer_ids[public_key]


def _calling_peer_id(max_frames: int = 6) -> str | None:
    """The authenticated remote peer id of the DHT request being validated, or None. hivemind's AuthRPCWrapper
    calls `validate_request(request)` from the handler it registered, whose arguments are (request, P2PContext):
    the context is found in that caller's frame."""
    frame = sys._getframe(2)  # 0: here, 1: validate_request, 2: its caller
    for _ in range(max_frames):
        if frame is None:
            return None
        args = frame.f_locals.get("args")
        if isinstance(args, tuple) and args and isinstance(args[0], P2PContext) and args[0].remote_id is not None:
            return args[0].remote_id.to_base58()
        frame = frame.f_back
    return None


class StoreMembership:
    """A membership source reading the signed list from the swarm store (what `potluck revoke` writes).
    Picklable, so it also works where the DHT process is spawned rather than forked (macOS, Windows)."""

    def __init__(self, swarm_id: str, store_path: str | None = None):
        self.swarm_id, self.store_path = swarm_id, store_path

    def __call__(self) -> Membership | None:
        from pathlib import Path

        return SwarmStore(Path(self.store_path) if self.store_path else None).membership(self.swarm_id)


def tailnet_p2p_kwargs(host: str, port: int = 0) -> dict[str, Any]:
    """hivemind.DHT / P2P.create keyword arguments for a swarm on a tailnet (or loopback in tests): listen on
    `host` only, over TCP, and switch off what a private swarm does not need and a stranger could use: the
    circuit-relay service and client (relays), UPnP/NAT-PMP port mapping, AutoNAT and IPFS bootstrap.

    The daemon's own libp2p DHT stays in server mode: it is how a member finds the address of a member it has
    only heard of by peer id. In client or auto mode, 6 of 36 lookups failed in a chain of 6 members (each
    joined through the previous one); in server mode none did. It tells whoever reaches the port the peer ids
    and addresses of members it knows; on a tailnet those addresses are visible anyway (SECURITY.md)."""
    maddr = f"/ip6/{host}/tcp/{port}" if ":" in host else f"/ip4/{host}/tcp/{port}"
    return {
        "host_maddrs": [maddr],
        "announce_maddrs": [maddr] if port else None,  # port 0: p2pd announces the port it picked
        "use_relay": False,
        "use_auto_relay": False,
        "nat_port_map": False,
        "auto_nat": False,
        "use_ipfs": False,
        "dht_mode": "server",
    }


def swarm_dht_kwargs(authorizer: SwarmAuthorizer, identity_path: str, host: str, port: int = 0,
                     initial_peers: Sequence[str] = ()) -> dict[str, Any]:
    """Everything `hivemind.DHT(start=True, **kwargs)` needs to run as a member of a private swarm."""
    return {
        **tailnet_p2p_kwargs(host, port),
        "initial_peers": list(initial_peers),
        "identity_path": identity_path,
        "authorizer": authorizer,
        "record_validators": [RSASignatureValidator(authorizer.identity)],
    }


def owner_peer_id(key_or_subkey: bytes) -> str | None:
    """Peer id of the owner named in a record key/subkey protected by RSASignatureValidator, or None. With
    `swarm_dht_kwargs` the owner key is the identity key, so a reader can check that a record claiming to
    come from peer X was stored (and signed) by X."""
    found = RSASignatureValidator._PUBLIC_KEY_RE.findall(key_or_subkey)
    if len(set(found)) != 1:
        return None
    try:
        return peer_id_of(RSAPublicKey.from_bytes(found[0]))
    except Exception:
        return None


async def _install_secret(secret: bytes, grace_seconds: float, dht, node) -> None:
    node.protocol.authorizer.set_secret(secret, grace_seconds)


def install_secret(dht, secret: bytes, grace_seconds: float, wait: bool = False):
    """Switch a running DHT's authorizer to `secret` (old tokens pass for `grace_seconds`). With `wait=False`,
    returns the future at once (keep a reference to it until it is done)."""
    return dht.run_coroutine(functools.partial(_install_secret, secret, grace_seconds), return_future=not wait)


async def _install_membership(wire: dict, dht, node) -> int:
    node.protocol.authorizer.set_membership(ms.from_wire(wire))
    return ms.from_wire(wire).version


async def _reload_membership(dht, node) -> None:
    node.protocol.authorizer.reload_membership()


def push_membership(dht, membership: Membership) -> None:
    """Hand a new member list to the authorizer inside a running DHT's process (takes effect immediately)."""
    dht.run_coroutine(functools.partial(_install_membership, ms.to_wire(membership)))


def reload_membership(dht, wait: bool = True):
    """Make a running DHT's authorizer re-read its membership source now (it keeps the source, unlike push).
    With `wait=False`, returns the future at once (keep a reference to it until it is done)."""
    return dht.run_coroutine(_reload_membership, return_future=not wait)
