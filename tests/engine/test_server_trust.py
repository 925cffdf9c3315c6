"""A member that misbehaves on the data plane (issue 13): it stops reading while it keeps sending (finding 3), names a
next server at an address of its choosing or a peer that is not a member (finding 8), or sends deeply nested JSON
mid-session (finding 7). Real servers and p2p daemons in the test process."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time

import pytest
import torch

from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.server.handlers import INBOX_MAX_ITEMS
from potluck.core.server.server import ServerConfig
from potluck.core.swarm.codec import b58encode
from potluck.core.swarm.dht import DHTOptions, start_dht
from potluck.core.swarm.streams import SESSION_PROTOCOL, close_writer, open_stream
from potluck.core.wire import control, framing
from potluck.core.wire.tensors import Ack, Step, decode_frame, encode_step

from .swarm_helpers import InProcessSwarm
from .test_exactness import PROMPT, reference

pytestmark = pytest.mark.slow
HIDDEN = 64
SEND_TIMEOUT = 3.0
CONFIG = ServerConfig(announce_period_seconds=2.0, record_ttl_seconds=6.0, send_timeout_seconds=SEND_TIMEOUT)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from potluck.core.model.tiny import make_tiny_model

    return make_tiny_model("llama", tmp_path_factory.mktemp("trust") / "llama", layers=6, hidden=HIDDEN, seed=3,
                           shard_size="40KB")


@pytest.fixture(scope="module")
def swarm(model_dir):
    with InProcessSwarm(model_dir, [(0, 3), (3, 6)], config=CONFIG) as s:
        dht = start_dht(DHTOptions(initial_peers=tuple(s.initial_peers), client_mode=True))
        s.client_p2p = s.loop.run(dht.replicate_p2p())
        try:
            yield s
        finally:
            dht.shutdown()


def open_frame(server, session_id: str, **fields) -> bytes:
    return control.encode(control.Open(session_id, server.spec.uid, server.stack.start, server.stack.end, 512, **fields))


async def _open(p2p, server, session_id: str, **fields):
    reader, writer = await open_stream(p2p, server.peer_id, SESSION_PROTOCOL, timeout_seconds=5)
    await framing.send(writer, open_frame(server, session_id, **fields))
    return reader, writer, decode_frame(await asyncio.wait_for(framing.receive(reader), 5))


def test_a_client_that_stops_reading_cannot_park_memory_on_the_server(swarm, model_dir):
    """Finding 3: a member sent steps and never read the replies; the server kept reading them into an unbounded
    inbox (175 MiB parked). Now the inbox is bounded, the stream pushes back, and the session ends after the
    send timeout."""
    server = swarm.servers[0]
    step = encode_step(Step(1, 0, torch.full((1, 512, HIDDEN), 0.1)))  # 128 KiB in, 128 KiB out
    limit_bytes = 48 << 20  # the old server took all of it, and more
    seen = {"inbox": 0}

    async def attack():
        reader, writer, opened = await _open(swarm.client_p2p, server, "greedy")
        assert isinstance(opened, control.Opened)
        handler = server._handlers["greedy"]
        sent = 0
        while sent < limit_bytes:
            try:
                await asyncio.wait_for(framing.send(writer, step), 2.0)
            except asyncio.TimeoutError:
                break  # the server stopped reading: back-pressure
            sent += len(step)
            seen["inbox"] = max(seen["inbox"], handler.inbox.qsize())
        stalled_at = time.monotonic()
        while "greedy" in server._handlers and time.monotonic() - stalled_at < SEND_TIMEOUT + 10:
            seen["inbox"] = max(seen["inbox"], handler.inbox.qsize())
            await asyncio.sleep(0.1)
        ended_after = time.monotonic() - stalled_at
        close_writer(writer)
        return sent, ended_after

    sent, ended_after = swarm.loop.run(attack(), timeout=180)
    print(f"the member got {sent / 2**20:.1f} MiB onto the stream before it pushed back; the session ended "
          f"{ended_after:.1f} s later; at most {seen['inbox']} steps waited in the inbox")
    assert sent < limit_bytes, "the server kept reading a client that reads nothing"
    assert seen["inbox"] <= INBOX_MAX_ITEMS
    assert "greedy" not in server._handlers and ended_after < SEND_TIMEOUT + 10
    assert server.budget.used_tokens == 0  # the session's cache reservation went with it
    expected, _ = reference(model_dir, PROMPT, 4)
    client = DistributedModelForCausalLM.from_pretrained(str(model_dir), initial_peers=swarm.initial_peers, timeout=10)
    try:
        assert client.generate(PROMPT, max_new_tokens=4, eos_token_id=None).token_ids == expected
    finally:
        client.shutdown()


class Listener:
    """A TCP port that counts who connects: the address a member names as 'the next server'."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def maddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.sock.getsockname()[1]}"

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop = True
        self.sock.close()


def stranger() -> str:
    return b58encode(b"\x12\x20" + hashlib.sha256(b"not in this swarm").digest())


def test_pushes_go_only_to_members_at_their_announced_addresses(swarm):
    """Finding 8: the next server's addresses came from the client and were dialled as given, even for a peer id
    that is not a member. Now the server pushes only to a member, at the addresses its own record announces."""
    first, second = swarm.servers
    listener = Listener()

    async def push_one(next_hop: control.NextHop, session_id: str):
        reader, writer, opened = await _open(swarm.client_p2p, first, session_id, next=next_hop)
        try:
            if not isinstance(opened, control.Opened):
                return opened
            await framing.send(writer, encode_step(Step(1, 0, torch.full((1, 1, HIDDEN), 0.1))))
            return decode_frame(await asyncio.wait_for(framing.receive(reader), 15))
        finally:
            close_writer(writer)

    async def scenario():
        out = {}
        b_reader, b_writer, b_opened = await _open(swarm.client_p2p, second, "target", prev_peer=first.peer_id)
        assert isinstance(b_opened, control.Opened)
        # a real member named at a wrong address: the push goes to its announced address, never to ours
        out["member"] = await push_one(control.NextHop(second.peer_id, "target", (listener.maddr,)), "via-member")
        out["member_output"] = decode_frame(await asyncio.wait_for(framing.receive(b_reader), 15))
        close_writer(b_writer)
        # a peer id that announces nothing here, at our address: nothing is dialled
        out["stranger"] = await push_one(control.NextHop(stranger(), "x", (listener.maddr,)), "via-stranger")
        # a peer the member check refuses: refused when the session opens
        admit, first.admit = first.admit, lambda peer: peer != second.peer_id
        try:
            out["refused"] = await push_one(control.NextHop(second.peer_id, "target2"), "via-refused")
        finally:
            first.admit = admit
        return out

    try:
        out = swarm.loop.run(scenario(), timeout=120)
        time.sleep(0.5)
        assert isinstance(out["member"], Ack), out["member"]
        assert isinstance(out["member_output"], Step)  # the second server computed what the first pushed
        assert isinstance(out["stranger"], control.ErrorReply) and out["stranger"].code is control.ErrorCode.PUSH_FAILED
        assert "announces no block" in out["stranger"].message and out["stranger"].blame == stranger()
        assert isinstance(out["refused"], control.ErrorReply) and "not a member" in out["refused"].message
        assert listener.connections == 0, "the server dialled an address a client gave it"
    finally:
        listener.close()


def test_deep_json_mid_session_is_refused_and_the_session_and_its_cache_survive(swarm):
    """Finding 7, end to end: nested JSON (refused by the typed-JSON codec) in the middle of a session gets an
    error reply; the session goes on; when it closes, its cache reservation is released."""
    server = swarm.servers[0]
    deep = b'J{"op":"close","x":' + b"[" * 5000 + b"]" * 5000 + b"}"

    async def scenario():
        reader, writer, opened = await _open(swarm.client_p2p, server, "deep")
        assert isinstance(opened, control.Opened) and server.budget.used_tokens == 512
        await framing.send(writer, deep)
        error = decode_frame(await asyncio.wait_for(framing.receive(reader), 5))
        await framing.send(writer, encode_step(Step(2, 0, torch.full((1, 3, HIDDEN), 0.1))))
        output = decode_frame(await asyncio.wait_for(framing.receive(reader), 5))
        await framing.send(writer, control.encode(control.Close()))
        close_writer(writer)
        for _ in range(50):
            if server.budget.used_tokens == 0:
                break
            await asyncio.sleep(0.1)
        return error, output

    error, output = swarm.loop.run(scenario(), timeout=60)
    assert isinstance(error, control.ErrorReply) and "nested deeper" in error.message
    assert isinstance(output, Step) and output.hidden.shape == (1, 3, HIDDEN)
    assert server.budget.used_tokens == 0 and "deep" not in server._handlers
