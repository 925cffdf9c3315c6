"""Every RPC refuses bad input with an error reply and the server keeps serving, exactly."""

import asyncio
import math
import struct

import pytest
import torch

from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.swarm.dht import DHTOptions, start_dht
from potluck.core.swarm.streams import PUSH_PROTOCOL, SESSION_PROTOCOL, open_stream
from potluck.core.wire import control, framing
from potluck.core.wire.tensors import Ack, Step, decode_frame, encode_ack, encode_step

from .swarm_helpers import InProcessSwarm
from .test_exactness import PROMPT, reference

HIDDEN = 64


def step_frame(position=0, n=1, width=HIDDEN, value=0.1, flags=0):
    return encode_step(Step(1, position, torch.full((1, n, width), value), flags))


def open_frame(server, **overrides):
    message = {"op": "open", "session_id": "s" + str(id(overrides)), "model": server.spec.uid,
               "start": server.stack.start, "end": server.stack.end, "max_length": 16, "next": None, "prev_peer": None}
    message.update(overrides)
    return framing.json_frame(message)


async def exchange(p2p, server, frames, raw_first: bytes | None = None):
    """Open a session stream, send frames, return every reply until the server goes quiet."""
    reader, writer = await open_stream(p2p, server.peer_id, SESSION_PROTOCOL, timeout_seconds=5)
    if raw_first is not None:
        writer.write(raw_first)
    for frame in frames:
        await framing.send(writer, frame)
    replies = []
    try:
        while True:
            replies.append(decode_frame(await asyncio.wait_for(framing.receive(reader), 1.0)))
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
    return replies


def errors(replies):
    return [r.message for r in replies if isinstance(r, control.ErrorReply)]


def opened(replies) -> bool:
    return any(isinstance(r, control.Opened) for r in replies)


BAD_OPENS = [
    ("unknown kind", [b"Xhello"], "must open a session"),
    ("not json", [b"J{nope"], "not JSON"),
    ("no op", [b'J{"a":1}'], "must be an object with an 'op'"),
    ("step first", [step_frame()], "must open a session"),
    ("session id type", [lambda s: open_frame(s, session_id=7)], "open.session_id must be a string"),
    ("session id long", [lambda s: open_frame(s, session_id="x" * 65)], "1-64 characters"),
    ("wrong model", [lambda s: open_frame(s, model="other@123")], "hosts"),
    ("blocks outside", [lambda s: open_frame(s, start=0, end=99)], "not all hosted here"),
    ("bool start", [lambda s: open_frame(s, start=True)], "open.start must be an integer"),
    ("max length zero", [lambda s: open_frame(s, max_length=0)], "max_length"),
    ("max length huge", [lambda s: open_frame(s, max_length=10**9)], "max_length"),
    ("bad next", [lambda s: open_frame(s, next={"peer_id": 3})], "open.next.peer_id must be a string"),
    ("bad next addrs", [lambda s: open_frame(s, next={"peer_id": "a", "session_id": "b", "addrs": "x"})], "next.addrs"),
    ("deep json", [b'J{"op":"open","x":' + b"[" * 3000 + b"]" * 3000 + b"}"], "nested deeper"),
]

BAD_STEPS = [
    ("wrong width", lambda: step_frame(width=HIDDEN + 1), "hidden size"),
    ("nan", lambda: step_frame(value=math.nan), "NaN"),
    ("truncated", lambda: step_frame()[:-3], "payload has"),
    ("zero tokens", lambda: b"T" + struct.pack("<IIIIBB", 1, 0, 0, HIDDEN, 1, 0), "at least one token"),
    ("bad dtype", lambda: b"T" + struct.pack("<IIIIBB", 1, 0, 1, HIDDEN, 9, 0) + bytes(4 * HIDDEN), "dtype code"),
    ("bad flags", lambda: step_frame(flags=8), "flags"),
    ("gap", lambda: step_frame(position=5), "skip tokens"),
    ("past max length", lambda: step_frame(n=17), "max_length"),
    ("unknown op", lambda: framing.json_frame({"op": "explode"}), "unknown op"),
    ("bad history", lambda: framing.json_frame({"op": "history", "upto": -1, "request_id": 1}), "unsigned"),
    ("history ahead", lambda: control.encode(control.HistoryRequest(3, 1)), "only 0 tokens"),
    ("ack", lambda: encode_ack(Ack(1, 0, 1)), "not accepted"),
    ("a second open", lambda: framing.json_frame({"op": "open", "session_id": "x", "model": "m", "start": 0, "end": 1,
                                                   "max_length": 1}), "not accepted"),
    ("bad set_prev", lambda: framing.json_frame({"op": "set_prev", "prev_peer": 5}), "set_prev"),
    ("bad set_next", lambda: framing.json_frame({"op": "set_next", "next": {"peer_id": 1}}), "set_next.next.peer_id"),
    ("deep json", lambda: b'J{"op":"close","x":' + b"[" * 3000 + b"]" * 3000 + b"}", "nested deeper"),
    ("huge integer", lambda: b'J{"op":"history","upto":' + b"7" * 5000 + b',"request_id":1}', "too long"),
]


@pytest.mark.slow
def test_bad_messages_are_refused_and_the_server_keeps_serving(tiny_models):
    model_dir = tiny_models["llama"]
    ref_tokens, _ = reference(model_dir, PROMPT, 8)
    with InProcessSwarm(model_dir, [(0, 3), (3, 6)]) as swarm:
        server = swarm.servers[0]
        dht = start_dht(DHTOptions(initial_peers=tuple(swarm.initial_peers), client_mode=True))
        try:
            p2p = swarm.loop.run(dht.replicate_p2p())
            refused_before = server.stats.refused
            for name, frames, message in BAD_OPENS:
                frames = [f(server) if callable(f) else f for f in frames]
                replies = swarm.loop.run(exchange(p2p, server, frames))
                assert any(message in e for e in errors(replies)), f"{name}: {replies}"
                assert not opened(replies), name

            # an oversized frame header: refused without reading 5 GB
            replies = swarm.loop.run(exchange(p2p, server, [], raw_first=(5 * 2**30).to_bytes(8, "big")))
            assert any("exceeds" in e for e in errors(replies))

            # inside a valid session: each bad step is answered, and the session still works afterwards
            for name, make, message in BAD_STEPS:
                replies = swarm.loop.run(exchange(p2p, server, [open_frame(server), make(), step_frame()]))
                assert isinstance(replies[0], control.Opened), name
                assert any(message in e for e in errors(replies)), f"{name}: {replies}"
                outputs = [r for r in replies if isinstance(r, Step)]
                assert len(outputs) == 1 and outputs[0].hidden.shape == (1, 1, HIDDEN), f"{name}: session broken"

            # a push into a session from a peer that is not its named predecessor is refused
            opened_here = open_frame(server, session_id="victim", prev_peer="12D3KooWSomeoneElse")
            async def push_attack():
                reader, writer = await open_stream(p2p, server.peer_id, SESSION_PROTOCOL, timeout_seconds=5)
                await framing.send(writer, opened_here)
                assert isinstance(decode_frame(await framing.receive(reader)), control.Opened)
                preader, pwriter = await open_stream(p2p, server.peer_id, PUSH_PROTOCOL, timeout_seconds=5)
                await framing.send(pwriter, control.encode(control.PushOpen("victim")))
                reply = decode_frame(await asyncio.wait_for(framing.receive(preader), 5))
                writer.close()
                return reply
            reply = swarm.loop.run(push_attack())
            assert isinstance(reply, control.ErrorReply) and "no such session" in reply.message

            assert server.stats.refused - refused_before >= len(BAD_OPENS) + len(BAD_STEPS)
            swarm.loop.run(p2p.shutdown())
        finally:
            dht.shutdown()

        client = DistributedModelForCausalLM.from_pretrained(str(model_dir), initial_peers=swarm.initial_peers, timeout=10)
        try:
            assert client.generate(PROMPT, max_new_tokens=8, eos_token_id=None).token_ids == ref_tokens
        finally:
            client.shutdown()
