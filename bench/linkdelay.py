"""A user-space delaying TCP relay: a link with latency where the kernel has no netem (shared/TESTING.md).

It listens on a local port and forwards every connection to a target host:port. Each chunk read from one side is
written to the other `delay_ms` later, in both directions, in order (a chunk never overtakes an earlier one, even
when the delay is changed while it is held). Bounded: at most `max_connections` connections and
`max_held_chunks` chunks held per direction (reading stops while that many wait, which pushes back on the
sender); it stops by itself after `max_seconds`. Only for local addresses: the target must be a loopback or
private address you own.

In a test or script, in a background thread:

    with LinkDelay(("127.0.0.1", 9000), delay_ms=20) as link:
        ... connect to ("127.0.0.1", link.port) ...
        link.delay_ms = 2                        # takes effect for chunks read from now on
        print(link.stats())                      # bytes each way, connections, the delay really held

As a process (one process for several relays, its own interpreter lock), controlled on stdin:

    python bench/linkdelay.py --delay-ms 20 --map 0:127.0.0.1:9000 --map 0:127.0.0.1:9001
    prints "listen 127.0.0.1:<port> -> 127.0.0.1:9000" per relay, then "ready"; then reads lines:
    "delay <ms>" (answers "ok"), "stats" (answers one JSON line), "quit". End of stdin also stops it, so the
    relay dies with the process that started it.

The event loop's timers round waits up to whole milliseconds, so the last millisecond of each hold is slept
exactly, blocking the relay's loop for that long (a chunk of another connection due meanwhile waits for it);
`stats()` reports the mean hold actually applied.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import threading
import time
from dataclasses import dataclass, field

CHUNK_BYTES = 64 * 1024
TIMER_SLACK_SECONDS = 0.001  # asyncio rounds timer waits up to whole milliseconds (epoll): sleep the rest exactly
_TAILNET = ipaddress.ip_network("100.64.0.0/10")  # Tailscale's range, as used by the network-namespace tests


def check_local_target(host: str) -> None:
    """Refuse a target that is not this machine or a private address (this is a test tool, not a proxy)."""
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        raise ValueError(f"target {host!r} must be an IP address") from None
    if not (address.is_loopback or address.is_private or address in _TAILNET):
        raise ValueError(f"target {host} is not a loopback, private or 100.64.0.0/10 address")


@dataclass
class RelayStats:
    bytes_forward: int = 0  # client -> target
    bytes_backward: int = 0  # target -> client
    connections: int = 0  # accepted so far
    refused: int = 0  # over max_connections or target unreachable
    held_seconds_total: float = 0.0
    chunks: int = 0

    def to_dict(self) -> dict:
        held_ms = 1000 * self.held_seconds_total / self.chunks if self.chunks else 0.0
        return {"bytes_forward": self.bytes_forward, "bytes_backward": self.bytes_backward,
                "connections": self.connections, "refused": self.refused, "chunks": self.chunks,
                "mean_held_ms": round(held_ms, 3), "held_ms_total": round(1000 * self.held_seconds_total, 3)}


@dataclass
class Relay:
    """The asyncio relay; `LinkDelay` runs one in a thread, `main` runs several in a process."""

    target: tuple[str, int]
    delay_ms: float = 0.0
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    max_connections: int = 64
    max_held_chunks: int = 256  # per direction of a connection: at most this many chunks of <= 64 KiB wait
    stats: RelayStats = field(default_factory=RelayStats)

    def __post_init__(self):
        if self.delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        check_local_target(self.target[0])
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._open = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._on_connection, self.listen_host, self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self.listen_port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._open >= self.max_connections:
            self.stats.refused += 1
            writer.close()
            return
        self._tasks.add(task)
        self._open += 1
        self.stats.connections += 1
        target_writer = None
        try:
            try:
                target_reader, target_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
            except (OSError, asyncio.TimeoutError):
                self.stats.refused += 1
                return
            forward = asyncio.create_task(self._pipe(reader, target_writer, "bytes_forward"))
            backward = asyncio.create_task(self._pipe(target_reader, writer, "bytes_backward"))
            done, pending = await asyncio.wait({forward, backward}, return_when=asyncio.FIRST_EXCEPTION)
            if any(t.exception() for t in done):  # a reset on one side ends the other side too
                for t in pending:
                    t.cancel()
            await asyncio.gather(forward, backward, return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the relay is stopping: close both sides below
        finally:
            for w in (writer, target_writer):
                if w is not None:
                    w.close()
            self._open -= 1
            self._tasks.discard(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, counter: str) -> None:
        """Copy src to dst, each chunk `delay_ms` after it was read, in order; half-close dst at src's end."""
        loop = asyncio.get_running_loop()
        held: asyncio.Queue = asyncio.Queue(self.max_held_chunks)

        async def receive():
            while chunk := await src.read(CHUNK_BYTES):
                arrived = loop.time()
                await held.put((arrived, arrived + self.delay_ms / 1000, chunk))
            await held.put(None)

        receiver = asyncio.create_task(receive())
        try:
            while (item := await held.get()) is not None:
                arrived, due, chunk = item
                if (wait := due - loop.time()) > TIMER_SLACK_SECONDS:
                    await asyncio.sleep(wait - TIMER_SLACK_SECONDS)  # the loop's timers wake up to 1 ms late
                if (wait := due - loop.time()) > 0:
                    time.sleep(wait)  # the last fraction of a millisecond, precisely (blocks this loop that long)
                dst.write(chunk)
                await dst.drain()
                setattr(self.stats, counter, getattr(self.stats, counter) + len(chunk))
                self.stats.held_seconds_total += loop.time() - arrived
                self.stats.chunks += 1
            if dst.can_write_eof():
                dst.write_eof()
            await receiver  # re-raises a reset seen while reading
        finally:
            receiver.cancel()


class LinkDelay:
    """One relay on its own event-loop thread; a context manager. Stops by itself after `max_seconds`."""

    def __init__(self, target: tuple[str, int], delay_ms: float = 0.0, *, listen_port: int = 0,
                 max_seconds: float = 3600.0, **limits):
        self.relay = Relay(tuple(target), delay_ms, listen_port=listen_port, **limits)
        self.max_seconds = max_seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="linkdelay", daemon=True)
        self._stopped = False

    @property
    def port(self) -> int:
        return self.relay.listen_port

    @property
    def delay_ms(self) -> float:
        return self.relay.delay_ms

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        if value < 0:
            raise ValueError("delay_ms must be >= 0")
        self.relay.delay_ms = float(value)

    def stats(self) -> dict:
        return self.relay.stats.to_dict()

    def start(self) -> "LinkDelay":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.relay.start(), self._loop).result(10)
        self._loop.call_soon_threadsafe(lambda: self._loop.call_later(self.max_seconds, self._stop_soon))
        return self

    def _stop_soon(self) -> None:
        threading.Thread(target=self.close, daemon=True).start()

    def close(self) -> None:
        if self._stopped or not self._thread.is_alive():
            return
        self._stopped = True
        try:
            asyncio.run_coroutine_threadsafe(self.relay.stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join(10)

    def __enter__(self) -> "LinkDelay":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _parse_map(text: str) -> tuple[int, str, int]:
    try:
        listen, host, port = text.rsplit(":", 2)
        return int(listen), host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LISTEN_PORT:HOST:PORT") from None


async def _serve(args) -> None:
    relays = [Relay((host, port), args.delay_ms, listen_port=listen) for listen, host, port in args.map]
    try:
        for relay in relays:
            await relay.start()
            print(f"listen 127.0.0.1:{relay.listen_port} -> {relay.target[0]}:{relay.target[1]}", flush=True)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        deadline = loop.time() + args.max_seconds
        while (left := deadline - loop.time()) > 0:
            try:
                line = (await asyncio.wait_for(stdin.readline(), left)).decode().strip()
            except asyncio.TimeoutError:
                break
            if not line and stdin.at_eof() or line == "quit":
                break
            words = line.split()
            if words[:1] == ["delay"] and len(words) == 2:
                try:
                    delay = float(words[1])
                    if delay < 0:
                        raise ValueError
                except ValueError:
                    print("error: delay needs a number of milliseconds >= 0", flush=True)
                    continue
                for relay in relays:
                    relay.delay_ms = delay
                print("ok", flush=True)
            elif line == "stats":
                print(json.dumps([{"listen": r.listen_port, "target": f"{r.target[0]}:{r.target[1]}", "delay_ms": r.delay_ms,
                                   **r.stats.to_dict()} for r in relays]), flush=True)
            elif line:
                print(f"error: unknown command {line!r} (delay MS, stats, quit)", flush=True)
    finally:
        for relay in relays:
            await relay.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Delaying TCP relays on 127.0.0.1, controlled on stdin.")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added in each direction")
    parser.add_argument("--map", type=_parse_map, action="append", required=True, metavar="LISTEN:HOST:PORT",
                        help="listen on 127.0.0.1:LISTEN (0: any free port) and forward to HOST:PORT")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long whatever happens")
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error("--delay-ms must be >= 0")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
