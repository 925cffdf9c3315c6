"""The node's API endpoints: the pooled model for the apps and terminal programs of this PC (core/api/).

Two endpoints, both over the node's chat client (core/node/chat.py: the node's own DHT, its membership in a private
swarm, its own server reached in-process), both the same OpenAI-compatible app:

- "Let apps on this PC use the swarm" (settings `api_enabled`, `api_port`): http://127.0.0.1:PORT/v1, loopback
  only, no key; its URL goes to the app in the stats event (`api_url`);
- in a private swarm, always: a unix socket only this user can open, `<data dir>/run/<swarm id>.api.sock`, through
  which `potluck generate/chat/api --swarm NAME` reach the swarm while this node holds the member's identity
  (core/api/gateway.py, core/api/member.py). Its replies carry the `potluck` extension (route, token ids).

`update` starts and stops them to match the settings (quick: a bind and a thread; a server that goes is stopped on
a thread of its own). A port that is taken is reported through `on_error` in words, and retried on the next update.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from potluck.core.api.app import create_app
from potluck.core.api.engine import CausalLMEngine
from potluck.core.api.gateway import node_socket
from potluck.core.api.responses import served_model_id
from potluck.core.api.schema import ApiError
from potluck.core.api.server import ApiServer, bind_tcp, bind_unix, check_listen
from potluck.core.swarm.lifecycle import LOOPBACK

log = logging.getLogger(__name__)


class ApiService:
    def __init__(self, client: Callable[[], object], model_name: Callable[[], str], *,
                 on_token: Callable[[], None] = lambda: None, on_error: Callable[[str], None] = lambda words: None):
        """`client()` returns the node's chat client (from a worker thread; it may build it); `model_name()` the
        model the node runs ("" when none is set yet)."""
        self._engine = CausalLMEngine(self._client, self._ids, on_token=on_token)
        self._chat_client, self._model_name, self._on_error = client, model_name, on_error
        self._lock = threading.Lock()
        self._tcp: ApiServer | None = None
        self._tcp_port: int | None = None
        self._unix: ApiServer | None = None
        self._unix_swarm: str | None = None

    def _client(self):
        try:
            return self._chat_client()
        except RuntimeError as exc:  # no model yet, no swarm, shutting down: the node's words
            raise ApiError(503, f"this PC's node cannot answer right now: {exc}", code="node_unavailable") from None

    def _ids(self) -> list[str]:
        name = self._model_name()
        if not name:
            return []
        return list(dict.fromkeys([served_model_id(name, is_local=Path(name).expanduser().exists()), name]))

    @property
    def url(self) -> str:
        """The base URL for apps on this PC ("" while the endpoint is off)."""
        server = self._tcp
        return server.url if server is not None else ""

    def update(self, *, enabled: bool, port: int, swarm_id: str | None) -> None:
        """Have the loopback endpoint on `port` iff `enabled`, and the private socket iff in swarm `swarm_id`."""
        stale = []
        with self._lock:
            wanted_port = port if enabled else None
            if wanted_port != self._tcp_port:
                stale.append(self._tcp)
                self._tcp, self._tcp_port = None, None
                if wanted_port is not None:
                    self._tcp = self._start(lambda: bind_tcp(LOOPBACK, wanted_port), f"port {wanted_port}",
                                            allowed_hosts=check_listen(LOOPBACK, None), details=False)
                    self._tcp_port = wanted_port if self._tcp is not None else None
            if swarm_id != self._unix_swarm:
                stale.append(self._unix)
                self._unix, self._unix_swarm = None, None
                if swarm_id is not None:
                    self._unix = self._start(lambda: bind_unix(node_socket(swarm_id)), "this PC's private socket",
                                             allowed_hosts=None, details=True)
                    self._unix_swarm = swarm_id if self._unix is not None else None
        for server in stale:
            if server is not None:
                threading.Thread(target=server.stop, name="potluck-api-stop", daemon=True).start()

    def _start(self, bind: Callable, where: str, *, allowed_hosts, details: bool) -> ApiServer | None:
        try:
            server = ApiServer(create_app(self._engine, allowed_hosts=allowed_hosts, details=details), bind())
            server.start()
        except Exception as exc:  # a taken port, a folder we cannot write: in words, the node goes on
            words = getattr(exc, "strerror", None) or str(exc)
            self._on_error(f"Could not open the API for apps on {where}: {words}")
            return None
        log.info("API for apps on this PC: %s", server.url)
        return server

    def close(self) -> None:
        """Stop both endpoints (their running replies are cancelled); blocks up to a few seconds."""
        with self._lock:
            servers, self._tcp, self._unix = [self._tcp, self._unix], None, None
            self._tcp_port = self._unix_swarm = None
        for server in servers:
            if server is not None:
                server.stop()
