"""The swarms this PC knows, kept in `<config dir>/swarms.json` (written atomically; no secrets in it).

For each swarm: name, model, when and whether it was created here, peers to rejoin through, the invites made
here (only a SHA-256 of each join credential, plus expiry, uses left, who made it and who used it), the member
list (its statements carry their own signatures, core/swarm/membership.py) and which secret is current (its
epoch and the owner's signature over it, core/swarm/rotation.py). The swarm secret itself goes to core.secrets
(keyring or private file). Invites are enforced here, on the inviter's PC: `redeem` checks the credential, the
expiry and the uses left, and consumes one use; `cancel_invites_of` cancels those a revoked member made or used.

One process should write the store (the node or the CLI); writes within a process are serialised.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets as std_secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from potluck.core import paths
from potluck.core import secrets as swarm_secrets
from potluck.core.errors import PotluckError
from potluck.core.swarm import membership as ms
from potluck.core.swarm.invite import CREDENTIAL_BYTES, PRECISIONS, SWARM_ID_BYTES, Invite, format_utc
from potluck.core.swarm.signing import Signer

STORE_FORMAT = 1
SECRET_BYTES = 32
DEFAULT_INVITE_SECONDS = 7 * 24 * 3600
MAX_INVITE_SECONDS = 365 * 24 * 3600
PRUNE_AFTER_SECONDS = 30 * 24 * 3600  # invites expired this long ago are forgotten


class StoreError(PotluckError, RuntimeError):
    """The store cannot do this; the message says why."""


class SwarmNotFound(StoreError):
    pass


class RedeemError(StoreError):
    """An invite cannot be redeemed; the message is meant for the friend who tried to join."""


@dataclass(frozen=True)
class InviteRecord:
    invite_id: str
    credential_sha256: str  # hex; the credential itself is only in the code
    created_at: float  # unix seconds
    expires_at: int  # unix seconds
    max_uses: int | None  # None = any number of joins until it expires
    uses_left: int | None  # None when max_uses is None
    cancelled: bool = False
    created_by: str = ""  # peer id of this PC's member when it was made
    redeemed_by: tuple[str, ...] = ()  # peer ids of the members who joined with it


@dataclass(frozen=True)
class SwarmInfo:
    swarm_id: str
    name: str
    model_id: str
    model_revision: str
    created_at: float  # unix seconds: when created, or joined, on this PC
    created_here: bool
    bootstrap: tuple[str, ...] = ()  # multiaddrs of peers to (re)join through
    invites: tuple[InviteRecord, ...] = ()
    membership: dict[str, Any] | None = None  # signed list as stored; read it with SwarmStore.membership()
    quant: str = "none"  # the swarm's weight precision (none, int8, int4): every member serves at it
    secret_epoch: int = 0  # which secret is current: +1 at each rotation
    secret_proof: str = ""  # the owner's signature over (swarm id, epoch, SHA-256 of the secret); "" at epoch 0
    secret_since: float = 0.0  # unix seconds: when the current secret was made
    secret_covers: int = 0  # revoked members when the current secret was made (the owner rotates when it grows)


class SwarmStore:
    def __init__(self, path: Path | None = None, secret_store=swarm_secrets):
        self._path = path  # None: <config dir>/swarms.json, computed at each use
        self._secrets = secret_store  # anything with store_secret/load_secret/delete_secret like core.secrets
        self._lock = threading.RLock()

    @property
    def path(self) -> Path:
        return self._path or paths.config_dir() / "swarms.json"

    def list_swarms(self) -> list[SwarmInfo]:
        return list(self._read().values())

    def get(self, swarm: str) -> SwarmInfo:
        """By swarm id, or by name when exactly one swarm has it (case-insensitive)."""
        swarms = self._read()
        if swarm in swarms:
            return swarms[swarm]
        named = [s for s in swarms.values() if s.name.casefold() == swarm.strip().casefold()]
        if len(named) == 1:
            return named[0]
        if named:
            ids = ", ".join(s.swarm_id for s in named)
            raise StoreError(f"several swarms are called {swarm!r}; use the id: {ids}")
        raise SwarmNotFound(f"this PC knows no swarm {swarm!r}; `potluck swarms` lists them")

    def create_swarm(self, name: str, model_id: str, revision: str, *, creator: Signer | None = None,
                     creator_name: str = "", now: float | None = None, quant: str = "none"
                     ) -> tuple[SwarmInfo, swarm_secrets.SecretLocation]:
        """A new swarm with a random id and secret. With `creator` (its identity's key), its member list starts
        with it, as the swarm's owner."""
        now = time.time() if now is None else now
        if quant not in PRECISIONS:
            raise StoreError(f"a swarm's precision is one of {', '.join(PRECISIONS)}, not {quant!r}")
        name = name.strip()
        if not 0 < len(name) <= 64 or not name.isprintable():
            raise StoreError("a swarm name must be 1 to 64 printable characters")
        if not model_id.strip():
            raise StoreError("a swarm needs a model id (e.g. meta-llama/Llama-3.1-8B-Instruct)")
        swarm_id, secret = std_secrets.token_hex(SWARM_ID_BYTES), std_secrets.token_bytes(SECRET_BYTES)
        location = self._secrets.store_secret(swarm_id, secret)
        signed = None
        if creator is not None:
            signed = ms.to_wire(ms.new_membership(swarm_id, creator, creator_name[:64], now))
        info = SwarmInfo(swarm_id, name, model_id.strip(), revision.strip(), now, True, membership=signed, quant=quant,
                         secret_since=now)
        with self._lock:
            swarms = self._read()
            swarms[swarm_id] = info
            self._write(swarms)
        return info, location

    def add_joined_swarm(self, invite: Invite, secret: bytes, *, membership: ms.Membership | None = None,
                         epoch: int = 0, proof: str = "", now: float | None = None
                         ) -> tuple[SwarmInfo, swarm_secrets.SecretLocation]:
        """Remember a swarm joined with `invite`, once the inviter handed over the secret (its epoch and the
        owner's proof) and the member list."""
        now = time.time() if now is None else now
        location = self._secrets.store_secret(invite.swarm_id, secret)
        signed = ms.to_wire(membership) if membership is not None else None
        info = SwarmInfo(invite.swarm_id, invite.swarm_name, invite.model_id, invite.model_revision, now, False,
                         invite.bootstrap, membership=signed, quant=invite.quant, secret_epoch=epoch,
                         secret_proof=proof, secret_since=now)
        with self._lock:
            swarms = self._read()
            if invite.swarm_id in swarms:
                info = replace(swarms[invite.swarm_id], bootstrap=invite.bootstrap,
                               membership=signed or swarms[invite.swarm_id].membership, secret_epoch=epoch,
                               secret_proof=proof, secret_since=now)
            swarms[invite.swarm_id] = info
            self._write(swarms)
        return info, location

    def remove_swarm(self, swarm_id: str) -> list[swarm_secrets.SecretLocation]:
        """Forget a swarm and delete its secret; returns where the secret was removed from."""
        with self._lock:
            swarms = self._read()
            if swarm_id not in swarms:
                raise SwarmNotFound(f"this PC knows no swarm {swarm_id!r}")
            del swarms[swarm_id]
            self._write(swarms)
        return self._secrets.delete_secret(swarm_id)

    def secret(self, swarm_id: str) -> bytes:
        return self._secrets.load_secret(swarm_id)[0]

    def set_secret(self, swarm_id: str, secret: bytes, epoch: int, proof: str, *, covers: int = 0,
                   now: float | None = None) -> None:
        """Make `secret` current at `epoch` (a rotation, or one handed over by a member). Refuses an older epoch."""
        now = time.time() if now is None else now
        with self._lock:
            if epoch <= self.get(swarm_id).secret_epoch:
                raise StoreError(f"secret epoch {epoch} is not newer than the current one")
            self._secrets.store_secret(swarm_id, secret)
            self._update(swarm_id, lambda s: replace(s, secret_epoch=epoch, secret_proof=proof, secret_since=now,
                                                     secret_covers=covers))

    def set_bootstrap(self, swarm_id: str, multiaddrs: tuple[str, ...]) -> None:
        self._update(swarm_id, lambda s: replace(s, bootstrap=tuple(multiaddrs)))

    def create_invite(self, swarm_id: str, bootstrap: tuple[str, ...], *, expires_in_seconds: float =
                      DEFAULT_INVITE_SECONDS, max_uses: int | None = 1, now: float | None = None,
                      created_by: str = "") -> Invite:
        """A new code for `swarm_id` joining through `bootstrap`, made by the member `created_by` (this PC's);
        its credential's hash is remembered here."""
        now = time.time() if now is None else now
        if not 60 <= expires_in_seconds <= MAX_INVITE_SECONDS:
            raise StoreError("an invite must expire between 1 minute and 365 days from now")
        info = self.get(swarm_id)
        credential = std_secrets.token_bytes(CREDENTIAL_BYTES)
        invite = Invite(info.name, info.swarm_id, info.model_id, info.model_revision, tuple(bootstrap), credential,
                        int(now + expires_in_seconds), max_uses, info.quant)
        record = InviteRecord(invite.invite_id, hashlib.sha256(credential).hexdigest(), now, invite.expires_at,
                              max_uses, max_uses, created_by=created_by)
        self._update(info.swarm_id, lambda s: replace(s, invites=_pruned(s.invites, now) + (record,)))
        return invite

    def cancel_invite(self, invite_id: str) -> None:
        info, _ = self._find_invite(invite_id)
        self._update(info.swarm_id, lambda s: replace(
            s, invites=tuple(replace(r, cancelled=True) if r.invite_id == invite_id else r for r in s.invites)))

    def cancel_invites_of(self, swarm_id: str, peer_ids, invite_ids=()) -> int:
        """Cancel the invites made by or used by any of `peer_ids` (revoked members), and those in `invite_ids`;
        returns how many were cancelled now."""
        peers, ids = set(peer_ids), set(invite_ids)

        def hit(r: InviteRecord) -> bool:
            return not r.cancelled and (r.created_by in peers or bool(peers & set(r.redeemed_by)) or r.invite_id in ids)

        with self._lock:
            count = sum(map(hit, self.get(swarm_id).invites))
            if count:
                self._update(swarm_id, lambda s: replace(
                    s, invites=tuple(replace(r, cancelled=True) if hit(r) else r for r in s.invites)))
            return count

    def redeem(self, invite_id: str, credential: bytes, *, now: float | None = None, peer_id: str = ""
               ) -> tuple[SwarmInfo, InviteRecord]:
        """Consume one use of an invite made here, by `peer_id`. Raises RedeemError with a message for the joiner."""
        now = time.time() if now is None else now
        with self._lock:
            try:
                info, record = self._find_invite(invite_id)
            except StoreError:
                raise RedeemError("This code is not known here: it was made on another PC or was forgotten") from None
            given = hashlib.sha256(credential if isinstance(credential, bytes) else b"").hexdigest()
            if not hmac.compare_digest(given, record.credential_sha256):
                raise RedeemError("This code is not valid: check that you pasted the whole code")
            if record.cancelled:
                raise RedeemError("This code was cancelled by the person who made it: ask for a new one")
            if now >= record.expires_at:
                raise RedeemError(f"This code has expired on {format_utc(record.expires_at)}: ask for a new one")
            if record.uses_left is not None and record.uses_left <= 0:
                raise RedeemError(f"This code has already been used ({record.max_uses} of {record.max_uses} joins): "
                                  "ask your friend for a new one")
            used = replace(record, uses_left=None if record.uses_left is None else record.uses_left - 1,
                           redeemed_by=(record.redeemed_by + (peer_id,))[-64:] if peer_id else record.redeemed_by)
            self._update(info.swarm_id, lambda s: replace(
                s, invites=tuple(used if r.invite_id == invite_id else r for r in s.invites)))
            return self.get(info.swarm_id), used

    def membership(self, swarm_id: str) -> ms.Membership | None:
        """The stored member list, every statement checked (a format-1 list: with the swarm secret's HMAC); None
        if none is stored yet."""
        info = self.get(swarm_id)
        if info.membership is None:
            return None
        if info.membership.get("format") == ms.MEMBERSHIP_FORMAT:
            return ms.from_wire(info.membership, swarm_id=info.swarm_id)
        return ms.from_legacy(info.membership, self.secret(info.swarm_id), swarm_id=info.swarm_id)

    def save_membership(self, swarm_id: str, membership: ms.Membership) -> ms.Membership:
        """Store `membership` merged with the stored list (revocations are never lost); returns what was stored.
        A format-1 list stays as it was stored until a signed one replaces it."""
        with self._lock:
            old = self.membership(swarm_id)
            merged = membership if old is None else ms.merge(old, membership)
            if merged.legacy:
                return old if old is not None else merged
            wire = ms.to_wire(merged)
            self._update(swarm_id, lambda s: replace(s, membership=wire))
            return merged

    def _find_invite(self, invite_id: str) -> tuple[SwarmInfo, InviteRecord]:
        for info in self._read().values():
            for record in info.invites:
                if record.invite_id == invite_id:
                    return info, record
        raise StoreError(f"no invite {invite_id!r} was made on this PC")

    def _update(self, swarm_id: str, change) -> None:
        with self._lock:
            swarms = self._read()
            if swarm_id not in swarms:
                raise SwarmNotFound(f"this PC knows no swarm {swarm_id!r}")
            swarms[swarm_id] = change(swarms[swarm_id])
            self._write(swarms)

    def _read(self) -> dict[str, SwarmInfo]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise StoreError(f"{self.path} cannot be read ({e}); move it away to start over") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("swarms"), list):
            raise StoreError(f"{self.path} is not a Potluck swarm list; move it away to start over")
        if raw.get("format", 0) > STORE_FORMAT:
            raise StoreError(f"{self.path} was written by a newer Potluck (format {raw['format']}); update Potluck")
        try:
            return {s.swarm_id: s for s in map(_swarm_from_json, raw["swarms"])}
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"{self.path} is damaged ({type(e).__name__}: {e}); move it away to start over") from None

    def _write(self, swarms: dict[str, SwarmInfo]) -> None:
        data = {"format": STORE_FORMAT, "swarms": [asdict(s) for s in swarms.values()]}
        paths.ensure_dir(self.path.parent, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=".swarms-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def parse_duration(text: str) -> int:
    """`--expires` values: "90m", "12h", "7d", "2w" or plain seconds -> seconds. Raises StoreError."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*([smhdw]?)\s*", text.lower())
    if m is None:
        raise StoreError(f"cannot read the duration {text!r}: use e.g. 30m, 12h, 7d or 2w")
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    if not 60 <= seconds <= MAX_INVITE_SECONDS:
        raise StoreError("an invite must expire between 1 minute and 365 days from now")
    return seconds


def _pruned(invites: tuple[InviteRecord, ...], now: float) -> tuple[InviteRecord, ...]:
    return tuple(r for r in invites if r.expires_at > now - PRUNE_AFTER_SECONDS)


def _swarm_from_json(d: dict[str, Any]) -> SwarmInfo:
    known = {f for f in SwarmInfo.__dataclass_fields__}
    d = {k: v for k, v in d.items() if k in known}  # tolerate fields from newer versions
    invites = tuple(InviteRecord(**{**{k: v for k, v in r.items() if k in InviteRecord.__dataclass_fields__},
                                    "redeemed_by": tuple(r.get("redeemed_by", ()))}) for r in d.get("invites", ()))
    if not re.fullmatch(r"[0-9a-f]{16}", d["swarm_id"]):
        raise ValueError(f"bad swarm id {d['swarm_id']!r}")
    return SwarmInfo(**{**d, "bootstrap": tuple(d.get("bootstrap", ())), "invites": invites})

