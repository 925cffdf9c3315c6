"""Serving the API app with uvicorn on a thread of its own: on a TCP address (`potluck api`, the node's "Let apps
on this PC use the swarm"), or on a unix socket only this user can open (the node's endpoint for this PC's
terminal programs, core/api/gateway.py).

Listening anywhere but loopback needs an API key: whoever can reach the port could otherwise use the swarm (and
the friends' PCs) in this PC's name. The key is never printed or logged. uvicorn logs nothing of its own here (no
access log, no log config): the node's standard output is its protocol with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import threading
import time
import weakref
from pathlib import Path

from potluck.core import paths
from potluck.core.errors import PotluckError

API_KEY_ENV = "POTLUCK_API_KEY"
DEFAULT_PORT = 8000
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
STOP_GRACE_SECONDS = 3.0  # open connections get this long to finish when the server stops
START_TIMEOUT_SECONDS = 15.0
MAX_UNIX_PATH_BYTES = 103  # sockaddr_un holds 104 bytes on macOS (108 on Linux), the final NUL included


class ApiConfigError(PotluckError, ValueError):
    """The API server cannot listen as asked; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, api_key: str | None) -> frozenset[str] | None:
    """Refuse a non-loopback address without an API key. Returns the Host names requests may address: the
    loopback names on loopback (so a web page cannot reach the server through a DNS-rebinding trick), else None."""
    if is_loopback(host):
        return LOOPBACK_NAMES | {host}
    if not api_key:
        raise ApiConfigError(f"listening on {host} would let other machines use the swarm in your name: set an API "
                             f"key with --api-key or the {API_KEY_ENV} environment variable, or listen on 127.0.0.1")
    return None


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: any free port). ApiConfigError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets that say they are TCP, and with it on,
    # every reply whose headers and body go out in two writes waits ~40 ms for a delayed acknowledgement
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ApiConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another port") from None
    return _keep_from_children(sock)


def bind_unix(path: Path) -> socket.socket:
    """A listening unix socket at `path` that only this user can open (a stale one is replaced)."""
    if len(str(path).encode()) > MAX_UNIX_PATH_BYTES:
        raise ApiConfigError(f"the socket path {path} is too long for this system ({MAX_UNIX_PATH_BYTES} bytes at "
                             "most): use a shorter POTLUCK_HOME")
    os.chmod(paths.ensure_dir(path.parent, 0o700), 0o700)  # the folder keeps others out, whatever the umask
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
    except OSError:
        sock.close()
        raise
    sock.listen(32)
    return _keep_from_children(sock)


_listening: weakref.WeakSet[socket.socket] = weakref.WeakSet()
_fork_hook_registered = False


def _keep_from_children(sock: socket.socket) -> socket.socket:
    """Close `sock` in every process forked from this one. The node forks its DHT process (hivemind) while the API
    may listen; a child holding the listening socket keeps the port open after the server stops, and the kernel
    then accepts connections that nobody answers."""
    global _fork_hook_registered
    _listening.add(sock)
    if not _fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_close_listening)
        _fork_hook_registered = True
    return sock


def _close_listening() -> None:
    for sock in list(_listening):
        with contextlib.suppress(OSError):
            sock.close()


class ApiServer:
    """uvicorn serving `app` on an already bound socket, on a daemon thread. `start()` returns once it serves;
    `stop()` cancels the generations still running, lets connections finish briefly and ends the thread."""

    def __init__(self, app, sock: socket.socket, *, name: str = "potluck-api"):
        self.app, self.sock, self.name = app, sock, name
        self._server = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        self._unix_inode = None
        if sock.family == socket.AF_UNIX:
            self.url = str(sock.getsockname())  # the socket's path
            self._unix_inode = os.stat(self.url).st_ino
        else:
            host, port = sock.getsockname()[:2]
            self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"

    def start(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        import uvicorn

        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=STOP_GRACE_SECONDS, ws="none")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_seconds
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start: {self._failure or 'timed out'}")
            time.sleep(0.01)

    def _serve(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[self.sock])

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start() or seen as a dead thread
            self._failure = exc

    def stop(self, timeout_seconds: float = STOP_GRACE_SECONDS + 5) -> None:
        if self._server is None:
            self.sock.close()
            return
        routes = getattr(self.app, "routes", None)
        if self._loop is not None and routes is not None:
            try:
                self._loop.call_soon_threadsafe(routes.cancel_all)
            except RuntimeError:  # the loop has ended already
                pass
        self._server.should_exit = True
        self._thread.join(timeout_seconds)
        self.sock.close()
        if self._unix_inode is not None:  # remove our socket file, not one a newer server made at the same path
            with contextlib.suppress(OSError):
                if os.stat(self.url).st_ino == self._unix_inode:
                    os.unlink(self.url)
