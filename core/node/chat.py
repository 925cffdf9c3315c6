"""The node's chat: each `generate` runs on its own worker thread through the swarm, streaming `token` events and
ending with `done` (or `error`); `cancel` sets the request's event and the reply stops after its next token.

The client (core.client.model.DistributedModelForCausalLM: embeddings, final norm and LM head here, blocks on the
swarm's servers) is built on first use and kept while the model and the swarm connection stay the same. It shares
the node's DHT (so in a private swarm it speaks as this PC, a member), and reaches this PC's own server through
core.node.loopback, since libp2p will not dial its own peer id.

A generate command's `speculative` ("lookup" by default: the same reply in fewer trips through the swarm) and
`private` (the first and last blocks on this PC) reach the client's generation (`ReplyOptions`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from potluck.core import protocol
from potluck.core.node import cancellable
from potluck.core.node.loopback import LoopbackP2P
from potluck.core.node.stats import TextStream, sampling_kwargs

log = logging.getLogger(__name__)

MAX_CONCURRENT_REPLIES = 4  # more generate commands at once are refused (each holds a session on every server)
CLIENT_TIMEOUT_SECONDS = 20.0  # the client waits this long for a server before failing over


@dataclass(frozen=True)
class ClientRecipe:
    """What the chat client is built from; another model or swarm connection builds a new client."""
    model: str
    swarm_key: str  # which swarm connection
    self_peer_id: str  # this PC's peer id: its own server is next door
    dht: object = field(compare=False, repr=False)  # the node's hivemind.DHT
    local: Callable = field(compare=False, repr=False)  # () -> core.node.loopback.LocalServer | None


def build_client(recipe: ClientRecipe):
    """A DistributedModelForCausalLM on the node's DHT, whose streams to this PC's own server stay local."""
    from potluck.core.client.model import DistributedModelForCausalLM

    client = DistributedModelForCausalLM.from_pretrained(recipe.model, dht=recipe.dht, self_peer_id=recipe.self_peer_id,
                                                         timeout=CLIENT_TIMEOUT_SECONDS)
    client.swarm.p2p = LoopbackP2P(client.swarm.p2p, recipe.local)  # sessions and pings take it from here
    return client


class ReplyOptions:
    """The chat client for one reply, with the command's generation options (`speculative`, `private`) added to
    every `generate`/`agenerate` call; everything else is the client's own (core.node.cancellable drives it)."""

    def __init__(self, client, cmd: protocol.Generate):
        self._client = client
        self.options = {"speculative": cmd.speculative, "private": cmd.private}

    def __getattr__(self, name):
        return getattr(self._client, name)

    def generate(self, **kwargs):
        return self._client.generate(**kwargs, **self.options)

    async def agenerate(self, request, **kwargs):
        return await self._client.agenerate(request, **kwargs, **self.options)


def close_client(client) -> None:
    """Stop the client's loop. Not client.shutdown(): that closes its p2p replica, and closing a replica of the
    node's daemon broke the stream handlers of the node's later servers (hivemind 1.1.12). The DHT is the node's."""
    client.loop.stop()


class ChatService:
    """Runs generate commands on worker threads. `send` must be safe to call from any thread."""
    def __init__(self, send: Callable[[protocol.Event], None], recipe: Callable[[], ClientRecipe],
                 on_token: Callable[[], None] = lambda: None,
                 make_client: Callable[[ClientRecipe], object] = build_client,
                 drop_client: Callable[[object], None] = close_client):
        self._send, self._recipe, self._on_token = send, recipe, on_token
        self._make_client, self._drop_client = make_client, drop_client
        self._lock = threading.Lock()  # guards _active and _client
        self._client_lock = threading.Lock()  # one client build at a time
        self._active: dict[str, threading.Event] = {}
        self._client: tuple[ClientRecipe, object] | None = None
        self._closed = False

    @property
    def client_parts(self):
        """The chat client's own model parts (embeddings, final norm, output layer) once a chat built them."""
        with self._lock:
            built = self._client
        return getattr(built[1], "parts", None) if built else None

    @property
    def active_requests(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def submit(self, cmd: protocol.Generate) -> None:
        with self._lock:
            if self._closed:
                problem = "the node is shutting down"
            elif cmd.request_id in self._active:
                problem = f"a reply with request id {cmd.request_id!r} is already running"
            elif len(self._active) >= MAX_CONCURRENT_REPLIES:
                problem = f"{MAX_CONCURRENT_REPLIES} replies are already running; wait for one to finish"
            else:
                problem = ""
            if not problem:
                cancel = self._active[cmd.request_id] = threading.Event()
        if problem:
            self._send(protocol.Error(message=problem, request_id=cmd.request_id))
            return
        threading.Thread(target=self._run, args=(cmd, cancel), name=f"potluck-chat-{cmd.request_id[:16]}",
                         daemon=True).start()

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            event = self._active.get(request_id)
        if event is not None:
            event.set()
        return event is not None

    def cancel_all(self) -> None:
        with self._lock:
            events = list(self._active.values())
        for event in events:
            event.set()

    def close(self, wait_seconds: float = 5.0) -> None:
        """Cancel what runs, wait a little for it to end, and shut the client down."""
        with self._lock:
            self._closed = True
        self.cancel_all()
        deadline = time.monotonic() + wait_seconds
        while self.active_requests and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._client_lock, self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                self._drop_client(client[1])
            except Exception:  # shutting down anyway
                log.exception("closing the chat client failed")

    def client(self):
        """The chat client for the current settings, built on first use (which blocks). From a worker thread
        only: the node's API endpoint (core/node/api_service.py) runs its requests on this client too."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the node is shutting down")
        return self._client_for(self._recipe())

    # ---- one reply, on its worker thread -------------------------------------------------------------------------
    def _client_for(self, recipe: ClientRecipe):
        with self._client_lock:
            with self._lock:
                current = self._client
            if current is not None and current[0] == recipe:
                return current[1]
            if current is not None:
                self._drop_client(current[1])
            client = self._make_client(recipe)
            with self._lock:
                self._client = (recipe, client)
            return client

    def _run(self, cmd: protocol.Generate, cancel: threading.Event) -> None:
        try:
            client = self._client_for(self._recipe())
            if cancel.is_set():
                self._send(protocol.Done(request_id=cmd.request_id, text="", token_count=0, tokens_per_second=0.0,
                                         stop_reason=protocol.StopReason.CANCELLED))
                return

            ids: list[int] = []
            stream = TextStream()
            tokenizer = getattr(client, "tokenizer", None)

            def on_token(token_id: int, text: str) -> None:
                self._on_token()
                ids.append(int(token_id))
                if tokenizer is not None:  # the client's own piece cannot take back a mark it sent too early
                    text = stream.feed(tokenizer.decode(ids, skip_special_tokens=True))
                self._send(protocol.Token(request_id=cmd.request_id, text=text, token_id=int(token_id)))

            messages = [{"role": m.role, "content": m.content} for m in cmd.messages] if cmd.messages else None
            # cancel interrupts a step in flight and closes the servers' sessions (core/node/cancellable.py)
            result = cancellable.generate(ReplyOptions(client, cmd), cancel, on_token, prompt=cmd.prompt,
                                          messages=messages, **sampling_kwargs(cmd))
            self._send(protocol.Done(request_id=cmd.request_id, text=result.text, token_count=len(result.token_ids),
                                     tokens_per_second=round(result.tokens_per_second, 2),
                                     route=result.route, stop_reason=result.stop_reason))
        except Exception as exc:  # the swarm, the model or a bug: the owner reads it under the reply
            log.warning("reply %s failed: %s: %s", cmd.request_id, type(exc).__name__, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            self._send(protocol.Error(message=error_words(exc), request_id=cmd.request_id))
        finally:
            with self._lock:
                self._active.pop(cmd.request_id, None)


def error_words(exc: BaseException) -> str:
    """A failed reply in words for the chat window."""
    text = str(exc).strip() or type(exc).__name__
    return text[:1].upper() + text[1:]
