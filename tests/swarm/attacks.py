"""What an outsider tries against a private swarm, every attempt counted: join (read) its DHT, announce blocks,
open an inference session, push activations. Used inside the test process (loopback) and as a script inside a
network namespace (test_netns.py):

    python -m tests.swarm.attacks --host IP --peers MADDR.. --targets JSON --uid UID --marker KEY --mode plain ...

Success criteria (what would count as a breach):
- join: the outsider's DHT reads `marker`, a key a member stored after the outsider started;
- announce: judged by the caller: a member's `fetch_records` lists the outsider's peer id;
- session: a server answers "opened";
- push: a server answers anything but the member check's refusal (not_a_member) within 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field

import hivemind

from potluck.core.swarm import admission as ad
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm import membership as ms
from potluck.core.swarm.records import ServerRecord
from potluck.core.swarm.streams import PUSH_PROTOCOL, SESSION_PROTOCOL, close_writer, open_stream
from potluck.core.wire import control, framing

KINDS = ("join", "announce", "session", "push")


@dataclass
class Tally:
    attempts: Counter = field(default_factory=Counter)
    successes: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)  # error codes the servers answered with

    def add(self, kind: str, ok: bool, code: str | None = None) -> None:
        self.attempts[kind] += 1
        self.successes[kind] += bool(ok)
        if code:
            self.refusals[code] += 1
            self.refusals[f"{kind}:{code}"] += 1

    def merge(self, other: "Tally") -> "Tally":
        for name in ("attempts", "successes", "refusals"):
            getattr(self, name).update(getattr(other, name))
        return self

    def to_json(self) -> dict:
        return {"attempts": dict(self.attempts), "successes": dict(self.successes), "refusals": dict(self.refusals)}

    @classmethod
    def from_json(cls, d: dict) -> "Tally":
        return cls(Counter(d["attempts"]), Counter(d["successes"]), Counter(d["refusals"]))


def dial(maddrs) -> list[str]:
    return [m.rsplit("/p2p/", 1)[0] for m in maddrs]


async def try_session(p2p, peer_id: str, maddrs, model_uid: str, start: int, end: int) -> tuple[bool, str | None]:
    writer = None
    try:
        reader, writer = await open_stream(p2p, peer_id, SESSION_PROTOCOL, dial(maddrs), timeout_seconds=5)
        await framing.send(writer, control.encode(control.Open(os.urandom(6).hex(), model_uid, start, end, 8)))
        reply = control.decode(await asyncio.wait_for(framing.receive(reader), 5))
    except Exception as e:  # could not even talk to it: not a success
        return False, type(e).__name__
    finally:
        close_writer(writer)
    if isinstance(reply, control.Opened):
        return True, None
    return False, reply.code.value if isinstance(reply, control.ErrorReply) else "unexpected"


async def try_push(p2p, peer_id: str, maddrs, hidden_size: int) -> tuple[bool, str | None]:
    import torch

    from potluck.core.wire.tensors import Step, decode_frame, encode_step

    writer = None
    try:
        reader, writer = await open_stream(p2p, peer_id, PUSH_PROTOCOL, dial(maddrs), timeout_seconds=5)
        await framing.send(writer, control.encode(control.PushOpen("any")))
        try:  # the member check answers at once; a server that lets us in waits for our steps instead
            reply = decode_frame(await asyncio.wait_for(framing.receive(reader), 1))
        except asyncio.TimeoutError:
            await framing.send(writer, encode_step(Step(1, 0, torch.zeros(1, 1, hidden_size))))
            reply = decode_frame(await asyncio.wait_for(framing.receive(reader), 2))
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        return False, type(e).__name__  # the stream was closed on us without an answer
    except asyncio.TimeoutError:
        return True, None  # silence: the server may have taken the step
    except Exception as e:
        return False, type(e).__name__
    finally:
        close_writer(writer)
    code = reply.code.value if isinstance(reply, control.ErrorReply) else None
    return code != control.ErrorCode.NOT_A_MEMBER.value, code


def try_read(dht, key: str) -> bool:
    found = dht.get(key, latest=True)
    return found is not None


def announce(dht, model_uid: str, num_blocks: int, peer_id: str) -> None:
    record = ServerRecord(peer_id=peer_id, start_block=0, end_block=num_blocks, name="outsider",
                          throughput_tokens_per_second=1e6, cache_tokens_left=10**6)
    expiration = swarm_dht.now() + 120

    async def go():
        return await swarm_dht.store_records(dht, model_uid, record, expiration, num_blocks)

    asyncio.run(go())


def attack(dht, p2p_call, targets: list[tuple[str, list[str], int, int]], model_uid: str, num_blocks: int,
           hidden_size: int, marker: str | None, peer_id: str) -> Tally:
    """Every kind of attempt from one outsider against every target server (peer id, addresses, hosted block
    range). `p2p_call(coro_fn)` runs `coro_fn(p2p)` on the loop that owns the outsider's p2p, returns its result."""
    tally = Tally()
    if marker is not None:
        tally.add("join", try_read(dht, marker))
    announce(dht, model_uid, num_blocks, peer_id)
    tally.add("announce", False)  # judged by the caller from a member's view; counted here
    for target, maddrs, start, end in targets:
        ok, code = p2p_call(lambda p2p: try_session(p2p, target, maddrs, model_uid, start, end))
        tally.add("session", ok, code)
        ok, code = p2p_call(lambda p2p: try_push(p2p, target, maddrs, hidden_size))
        tally.add("push", ok, code)
    return tally


def outsider_dht(mode: str, host: str, peers: list[str], swarm_id: str, folder: str):
    """A DHT for an outsider: `plain` (no authorizer), `guess` (an authorizer with a made-up secret)."""
    from hivemind.p2p import P2P

    identity = os.path.join(folder, f"{mode}-{os.urandom(4).hex()}.key")
    P2P.generate_identity(identity)
    kwargs = {**ad.tailnet_p2p_kwargs(host), "initial_peers": peers, "identity_path": identity,
              "ensure_bootstrap_success": False, "check_if_identity_free": False}
    if mode == "guess":
        from potluck.core.swarm.signing import Signer

        key = ad.load_identity(identity)
        auth = ad.SwarmAuthorizer(swarm_id, os.urandom(32), key, ms.new_membership(swarm_id, Signer.from_identity(
            identity), "me", 1.0))
        kwargs.update(authorizer=auth, record_validators=[hivemind.dht.crypto.RSASignatureValidator(key)])
    dht = hivemind.DHT(start=True, **kwargs)
    return dht, dht.peer_id.to_base58()


def main(argv=None) -> int:
    """Script mode (inside a network namespace): run the outsiders given by --mode, print one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--peers", nargs="+", required=True)
    parser.add_argument("--targets", required=True, help='JSON [[peer_id, [maddr, ...], start, end], ...]')
    parser.add_argument("--uid", required=True)
    parser.add_argument("--num-blocks", type=int, required=True)
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--swarm-id", required=True)
    parser.add_argument("--marker", default=None)
    parser.add_argument("--mode", action="append", default=[], help="plain | guess | member (POTLUCK_HOME's swarm)")
    parser.add_argument("--code", action="append", default=[], help="an invite code to try joining with first")
    parser.add_argument("--session-only", action="store_true", help="only try sessions (a member's control)")
    parser.add_argument("--wait-refused", type=float, default=0.0, help="member mode: first wait up to this many "
                        "seconds until every target refuses it (a revocation spreading), and report how long it took")
    args = parser.parse_args(argv)
    targets = [(p, list(m), a, b) for p, m, a, b in json.loads(args.targets)]
    out: dict = {"joins": [], "outsiders": {}}
    for code in args.code:
        out["joins"].append(_try_join(code, args.host))
    with tempfile.TemporaryDirectory() as folder:
        for mode in args.mode:
            if mode == "member":
                from potluck.core.swarm.secure import open_swarm

                node = open_swarm(args.swarm_id)
                dht = swarm_dht.start_dht(node.dht_options(args.host, 0, initial_peers=tuple(args.peers)))
                peer_id = node.peer_id
            else:
                dht, peer_id = outsider_dht(mode, args.host, args.peers, args.swarm_id, folder)
            try:
                loop = asyncio.new_event_loop()
                replica = loop.run_until_complete(dht.replicate_p2p())
                call = lambda fn: loop.run_until_complete(fn(replica))  # noqa: E731
                if mode == "member" and args.wait_refused:
                    out["refused_after_seconds"] = _wait_refused(call, targets, args.uid, args.wait_refused)
                if args.session_only:
                    tally = Tally()
                    for target, maddrs, start, end in targets:
                        ok, code = call(lambda p: try_session(p, target, maddrs, args.uid, start, end))
                        tally.add("session", ok, code)
                else:
                    tally = attack(dht, call, targets, args.uid, args.num_blocks, args.hidden, args.marker, peer_id)
                loop.run_until_complete(replica.shutdown())
                loop.close()
            finally:
                dht.shutdown()
            out["outsiders"][mode] = {"peer_id": peer_id, **tally.to_json()}
    print(json.dumps(out), flush=True)
    return 0


def _wait_refused(call, targets, uid: str, limit_seconds: float) -> float | None:
    """Seconds until every target answers a session with not_a_member; None if not within `limit_seconds`."""
    import time

    began = time.monotonic()
    while time.monotonic() - began < limit_seconds:
        codes = [call(lambda p, t=t, m=m, a=a, b=b: try_session(p, t, m, uid, a, b))[1] for t, m, a, b in targets]
        if all(code == control.ErrorCode.NOT_A_MEMBER.value for code in codes):
            return round(time.monotonic() - began, 2)
        time.sleep(0.5)
    return None


def _try_join(code: str, host: str) -> dict:
    """Try to join with `code` as a fresh identity, skipping the joiner's own expiry check (the inviter decides)."""
    from potluck.core.swarm.invite import decode_invite
    from potluck.core.swarm.join import JoinError, request_join

    with tempfile.TemporaryDirectory() as folder:
        from hivemind.p2p import P2P

        identity = os.path.join(folder, "id.key")
        P2P.generate_identity(identity)
        try:
            invite = decode_invite(code, allow_expired=True)
            asyncio.run(request_join(invite, identity, host, "outsider"))
            return {"joined": True, "code": None}
        except JoinError as e:
            return {"joined": False, "code": e.code, "message": str(e)}
        except Exception as e:  # a typo in the code, etc.
            return {"joined": False, "code": type(e).__name__, "message": str(e)}


if __name__ == "__main__":
    sys.exit(main())


class HeldSession:
    """A session a member opens and keeps open on a server, stepping now and then, with a push stream into it
    from the same member (it names itself as the previous peer): what a revoked member holds at the revocation."""

    def __init__(self, p2p, peer_id: str, maddrs, model_uid: str, start: int, end: int, hidden_size: int):
        self.p2p, self.peer_id, self.maddrs = p2p, peer_id, list(maddrs)
        self.uid, self.start, self.end, self.hidden_size = model_uid, start, end, hidden_size
        self.reader = self.writer = self.push_reader = self.push_writer = None
        self.steps = 0  # steps served so far

    async def open(self, me: str) -> None:
        session_id = os.urandom(6).hex()
        self.reader, self.writer = await open_stream(self.p2p, self.peer_id, SESSION_PROTOCOL, dial(self.maddrs), 5)
        await framing.send(self.writer, control.encode(control.Open(session_id, self.uid, self.start, self.end, 8,
                                                                    prev_peer=me)))
        reply = control.decode(await asyncio.wait_for(framing.receive(self.reader), 5))
        assert isinstance(reply, control.Opened), reply
        self.push_reader, self.push_writer = await open_stream(self.p2p, self.peer_id, PUSH_PROTOCOL,
                                                               dial(self.maddrs), 5)
        await framing.send(self.push_writer, control.encode(control.PushOpen(session_id)))

    async def step(self) -> str | None:
        """One step through the client stream and one through the push stream: None while both are served, else
        what ended it (an error code, or the stream closing)."""
        import torch

        from potluck.core.wire.tensors import Step, decode_frame, encode_step

        try:
            for writer in (self.writer, self.push_writer):
                await asyncio.wait_for(framing.send(writer, encode_step(Step(self.steps + 1, 0, torch.zeros(
                    1, 1, self.hidden_size)))), 5)
                reply = decode_frame(await asyncio.wait_for(framing.receive(self.reader), 5))
                if isinstance(reply, control.ErrorReply):
                    return reply.code.value
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as e:
            return type(e).__name__
        self.steps += 1
        return None

    def close(self) -> None:
        close_writer(self.writer)
        close_writer(self.push_writer)
