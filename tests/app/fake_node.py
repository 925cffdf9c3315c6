"""A stand-in node process for the app's tests: a real child process speaking the real protocol (core.protocol).

Run as `python tests/app/fake_node.py [node]`. It says hello, follows start/pause/resume/drain/shutdown with the
state changes a real node makes, answers refresh with stats, streams a reply for generate (word by word) and
honours cancel. It exits when its stdin closes, like the real node when the GUI goes away.

Behaviour switches (environment):
  FAKE_NODE_EXIT_AT_START=N     exit with code N before saying hello
  FAKE_NODE_CRASH_AFTER_S=S     die with code 13 S seconds after launch
  FAKE_NODE_CRASH_LAUNCHES=N    ... but only in the first N launches (counted in FAKE_NODE_RECORD)
  FAKE_NODE_SILENT=1            never say hello (and never answer)
  FAKE_NODE_GARBAGE=1           write non-protocol lines around hello and after start
  FAKE_NODE_IGNORE_SHUTDOWN=1   ignore the shutdown command and SIGTERM
  FAKE_NODE_FAIL_START=TEXT     answer start with state failed (TEXT as detail), and stay up
  FAKE_NODE_USED_CODE=CODE      ... with a used code's words, when POTLUCK_INVITE_CODE is CODE
  FAKE_NODE_STATS=PATH          JSON object of stats fields to report (default: a four-PC swarm)
  FAKE_NODE_REPLY=TEXT          the reply to stream (default: a short greeting)
  FAKE_NODE_TOKEN_DELAY_S=S     pause between streamed tokens (default 0.01)
  FAKE_NODE_GENERATE_ERROR=TEXT answer generate with an error event
  FAKE_NODE_ALERT=TEXT          send a critical alert right after it starts serving
  FAKE_NODE_RECORD=PATH         append a launch record (argv, POTLUCK_* variables) and every command line received
  FAKE_NODE_HISTORY=PATH        JSON list of history days to report (default: two weeks of made-up days)
  FAKE_NODE_LOAD_DELAY_S=S      pause between the loading progress events of a start (default 0)
  FAKE_NODE_PAUSED_BY_RULE=TEXT answer start with state paused and TEXT as detail (a serving rule holds it back)
and the swarm page's switches of fake_swarm.py (FAKE_NODE_SWARM, FAKE_NODE_LOOPBACK, FAKE_NODE_JOIN_ERROR,
FAKE_NODE_REMOVED).
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from potluck.core import protocol  # noqa: E402
from potluck.core.protocol import NodeState  # noqa: E402
from tests.app.fake_swarm import FakeSwarm  # noqa: E402

DEFAULT_STATS = {
    "start_block": 12, "end_block": 24, "total_blocks": 32, "tokens_served": 48_213, "sessions_served": 57,
    "active_sessions": 2, "uptime_seconds": 3 * 3600 + 17 * 60, "bytes_up": 1_820_000_000, "bytes_down": 960_000_000,
    "memory_used_bytes": 7_400_000_000, "memory_free_bytes": 5_100_000_000, "throughput_tokens_per_second": 41.5,
    "tokens_used": 12_940, "peer_id": "12D3KooWme", "tokens_for_others": 41_870, "served_tokens_per_second": 6.4,
    "memory_blocks_bytes": 6_900_000_000, "month_bytes_up": 14_300_000_000,
    "members": [
        {"peer_id": "12D3KooWme", "name": "Sam's desktop", "state": "online", "start_block": 12, "end_block": 24, "online": True},
        {"peer_id": "12D3KooWana", "name": "Ana's desktop", "state": "online", "start_block": 0, "end_block": 14,
         "online": True},
        {"peer_id": "12D3KooWben", "name": "Ben's mini PC", "state": "draining", "start_block": 20, "end_block": 28,
         "online": True},
        {"peer_id": "12D3KooWcho", "name": "Cho's laptop", "state": "offline", "start_block": 0, "end_block": 0,
         "online": False, "last_seen": -(2 * 3600 + 10 * 60)},  # negative: seconds before now (made absolute)
    ],
    "coverage": [1] * 12 + [2, 2] + [1] * 6 + [2] * 4 + [1] * 4 + [0] * 4,
}
DEFAULT_SIZING = {
    "num_blocks": 12, "start_block": 12, "end_block": 24, "total_blocks": 32,
    "explanation": "This PC has 11.6 GiB of memory free. After keeping 2.0 GiB for the rest of the computer and 1.5 "
                   "GiB for conversations in progress, 12 blocks of 0.65 GiB each fit. Blocks 12–23 had the fewest servers.",
    "numbers": {"free_memory_bytes": 12_500_000_000, "reserve_bytes": 2 * 2**30,
                "cache_budget_bytes": 3 * 2**29, "block_bytes": 700_000_000},
}


class FakeNode:
    def __init__(self) -> None:
        self.env = os.environ
        self.out_lock = threading.Lock()
        self.state = NodeState.STOPPED
        self.cancelled: set[str] = set()
        self.record_path = self.env.get("FAKE_NODE_RECORD")
        self.swarm = FakeSwarm(self.send, self.set_state)

    def record(self, entry: dict) -> None:
        if self.record_path:
            with open(self.record_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")

    def send(self, msg) -> None:
        self.write_raw(protocol.encode(msg))

    def write_raw(self, text: str) -> None:
        with self.out_lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def set_state(self, state: NodeState, detail: str = "") -> None:
        self.state = state
        self.send(protocol.State(state=state, detail=detail))

    def stats(self) -> protocol.Stats:
        path = self.env.get("FAKE_NODE_STATS")
        data = json.loads(Path(path).read_text()) if path else DEFAULT_STATS
        now = time.time()
        members = [{**m, "last_seen": now + m["last_seen"] if m.get("last_seen", 0) < 0 else m.get("last_seen", 0)}
                   for m in data.get("members", [])]
        return protocol.decode_event(json.dumps({"v": 1, "kind": "stats", **data, "members": members}))

    def history(self) -> protocol.History:
        path = self.env.get("FAKE_NODE_HISTORY")
        if path:
            days = json.loads(Path(path).read_text())
        else:  # two weeks of a PC that serves evenings and chats a little
            today = datetime.date.today()
            days = [{"day": (today - datetime.timedelta(days=13 - i)).isoformat(), "tokens_served": 900 * (i % 5 + 2),
                     "tokens_for_others": 700 * (i % 5 + 2), "tokens_used": 350 * (i % 3 + 1),
                     "serving_seconds": 3600 * (1 + i % 4), "bytes_up": 400_000_000 * (i % 4 + 1),
                     "bytes_down": 150_000_000 * (i % 3 + 1)} for i in range(14) if i not in (3, 9)]
        return protocol.decode_event(json.dumps({"v": 1, "kind": "history", "days": days}))

    def load(self) -> None:
        """Progress events as the real node sends them while it loads 12 blocks of 0.65 GiB."""
        delay_seconds = float(self.env.get("FAKE_NODE_LOAD_DELAY_S", "0"))
        block_bytes = 700_000_000
        self.send(protocol.Progress(stage="download", done_bytes=2_100_000_000, total_bytes=4_900_000_000,
                                    text="Downloading model-00002-of-00004.safetensors"))
        for done in range(13):
            self.send(protocol.Progress(stage="load", done_bytes=done * block_bytes, total_bytes=12 * block_bytes,
                                        done_blocks=done, total_blocks=12, text=f"Loaded block {11 + done}"))
            time.sleep(delay_seconds)

    def serve(self, detail: str) -> None:
        self.set_state(NodeState.STARTING, detail)
        fail = self.env.get("FAKE_NODE_FAIL_START")
        used = self.env.get("FAKE_NODE_USED_CODE")
        if used and self.env.get("POTLUCK_INVITE_CODE") == used:
            fail = "Could not join: This code has already been used (1 of 1 joins): ask your friend for a new one"
        if fail:
            self.set_state(NodeState.FAILED, fail)
            return
        rule = self.env.get("FAKE_NODE_PAUSED_BY_RULE")
        if rule:
            self.set_state(NodeState.PAUSED, rule)
            return
        self.send(protocol.decode_event(json.dumps({"v": 1, "kind": "sizing", **DEFAULT_SIZING})))
        self.load()
        if self.env.get("FAKE_NODE_GARBAGE"):
            self.write_raw("Some library printed this to stdout")
        self.set_state(NodeState.SERVING, "Serving blocks 12–23")
        self.send(self.stats())
        self.send(self.history())
        self.swarm.serving()
        alert = self.env.get("FAKE_NODE_ALERT")
        if alert:
            self.send(protocol.Alert(level=protocol.AlertLevel.CRITICAL, text=alert, blocks=(28,)))

    def generate(self, cmd: protocol.Generate) -> None:
        error = self.env.get("FAKE_NODE_GENERATE_ERROR")
        if error:
            self.send(protocol.Error(request_id=cmd.request_id, message=error))
            return
        reply = self.env.get("FAKE_NODE_REPLY", "Hello! I am the fake node, answering through the swarm.")
        delay_seconds = float(self.env.get("FAKE_NODE_TOKEN_DELAY_S", "0.01"))
        pieces = [w + " " for w in reply.split(" ")]
        pieces[-1] = pieces[-1].rstrip()
        text, count, reason = "", 0, protocol.StopReason.EOS
        for index, piece in enumerate(pieces[: cmd.max_new_tokens]):
            if cmd.request_id in self.cancelled:
                reason = protocol.StopReason.CANCELLED
                break
            self.send(protocol.Token(request_id=cmd.request_id, text=piece, token_id=1000 + index))
            text, count = text + piece, count + 1
            time.sleep(delay_seconds)
        else:
            if len(pieces) > cmd.max_new_tokens:
                reason = protocol.StopReason.LENGTH
        route = (
            protocol.RouteHop(peer_id="12D3KooWana", name="Ana's desktop", start_block=0, end_block=12),
            protocol.RouteHop(peer_id="12D3KooWme", name="Sam's desktop", start_block=12, end_block=24),
            protocol.RouteHop(peer_id="12D3KooWben", name="Ben's mini PC", start_block=24, end_block=32),
        )
        self.send(protocol.Done(request_id=cmd.request_id, text=text, token_count=count, tokens_per_second=12.5,
                                route=route, stop_reason=reason.value))

    def handle(self, cmd: protocol.Command) -> bool:
        """Act on one command; False means exit."""
        if isinstance(cmd, protocol.Start):
            self.serve("Loading blocks 12–23")
        elif isinstance(cmd, protocol.Resume):
            self.serve("Resuming")
        elif isinstance(cmd, (protocol.Pause, protocol.Drain)):
            self.set_state(NodeState.DRAINING, "Finishing 2 conversations")
            if isinstance(cmd, protocol.Pause):
                self.set_state(NodeState.PAUSED, "Paused by you")
        elif isinstance(cmd, protocol.Refresh):
            self.send(self.stats())
            self.send(self.history())
        elif isinstance(cmd, protocol.Generate):
            threading.Thread(target=self.generate, args=(cmd,), daemon=True).start()
        elif isinstance(cmd, protocol.Cancel):
            self.cancelled.add(cmd.request_id)
        elif isinstance(cmd, protocol.SetConfig):
            self.send(protocol.Log(line=f"config: {sorted(cmd.values)}"))
            self.swarm.configure(cmd.values)
        elif self.swarm.handle(cmd):
            pass
        elif isinstance(cmd, protocol.Shutdown) and not self.env.get("FAKE_NODE_IGNORE_SHUTDOWN"):
            self.set_state(NodeState.STOPPING, "Shutting down")
            return False
        return True

    def run(self) -> int:
        self.record({"launch": True, "pid": os.getpid(), "argv": sys.argv[1:],
                     "potluck_env": {k: v for k, v in self.env.items() if k.startswith("POTLUCK_")}})
        if "FAKE_NODE_EXIT_AT_START" in self.env:
            sys.stderr.write("fake node: failing at start as told\n")
            return int(self.env["FAKE_NODE_EXIT_AT_START"])
        if self.env.get("FAKE_NODE_IGNORE_SHUTDOWN"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        crash_after = self.env.get("FAKE_NODE_CRASH_AFTER_S")
        crash_launches = int(self.env.get("FAKE_NODE_CRASH_LAUNCHES", "0"))
        if crash_launches and self.record_path:
            launches = Path(self.record_path).read_text().count('"launch": true')
            crash_after = crash_after if launches <= crash_launches else None
        if crash_after:
            threading.Timer(float(crash_after), lambda: (sys.stderr.write("fake node: crashing as told\n"),
                                                         sys.stderr.flush(), os._exit(13))).start()
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in sys.stdin] + [lines.put(None)], daemon=True).start()
        silent = bool(self.env.get("FAKE_NODE_SILENT"))
        if not silent:
            if self.env.get("FAKE_NODE_GARBAGE"):
                self.write_raw("this is not JSON")
            self.send(protocol.Hello(version="0.0-fake", pid=os.getpid()))
            sys.stderr.write("fake node: ready\n")
            sys.stderr.flush()
            self.set_state(NodeState.STOPPED, "Waiting for start")
        while True:
            line = lines.get()
            if line is None:
                return 0  # stdin closed: the GUI is gone
            self.record({"command": line.strip()})
            if silent:
                continue
            try:
                cmd = protocol.decode_command(line)
            except protocol.ProtocolError as exc:
                self.send(protocol.Error(message=f"bad command: {exc}"))
                continue
            if not self.handle(cmd):
                return 0


if __name__ == "__main__":
    sys.exit(FakeNode().run())
