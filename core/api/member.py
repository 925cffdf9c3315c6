"""`--swarm NAME` for terminal programs (`generate`, `chat`, `api`): a member uses their private swarm from here.

A PC takes part in a private swarm with one identity, and p2pd refuses the same identity twice. So:

- when this PC's node of the swarm runs (the app's node, core/node/api_service.py), the program goes through it:
  the node offers its chat client on a private unix socket (core/api/gateway.py), and replies run on its
  connection, with its membership, through its own blocks where it hosts them;
- when no node of the swarm runs, the program joins as the member itself: the member's DHT settings
  (lifecycle.prepare_member(...).dht_options(client_mode=True): the swarm's authorizer, signed records) in
  client mode on any port, and a DistributedModelForCausalLM on that DHT. It holds the swarm's node lock while it
  runs, so a node started meanwhile says the identity is in use instead of clashing in p2pd;
- a `potluck serve --swarm` holds the identity but offers no endpoint: the program says so.
"""

from __future__ import annotations

import contextlib
import dataclasses

from potluck.core.api.gateway import NodeClient, node_socket
from potluck.core.errors import PotluckError
from potluck.core.swarm import lifecycle, secure


class MemberBusy(PotluckError, RuntimeError):
    """This PC's identity in the swarm is held by a program that offers no way in."""


class MemberModel:
    """A DistributedModelForCausalLM joined as this PC's member: everything is the model's, but `shutdown()` also
    leaves the DHT and releases the swarm's node lock."""

    def __init__(self, model, model_name: str, close):
        self._model, self.model_name, self._close = model, model_name, close

    def __getattr__(self, name):
        return getattr(self._model, name)

    def shutdown(self) -> None:
        try:
            self._model.shutdown()
        finally:
            self._close()


def open_swarm_model(swarm: str, *, model: str | None = None, quant: str | None = None, timeout: float = 20.0,
                     push: bool = True, dtype: str = "float32"):
    """What a terminal program talks to for `--swarm NAME`: a NodeClient when this PC's node of the swarm runs,
    else a MemberModel (see the module doc). `model`: a local copy of the swarm's model (default: the swarm's id);
    through the node, the node's model is used. Raises PotluckError subclasses saying why not."""
    node = secure.open_swarm(swarm)
    running = secure.running_node(node.swarm_id)
    if running is not None:
        path = node_socket(node.swarm_id)
        if not path.exists():
            raise MemberBusy(f"this PC's identity in {node.info.name!r} is in use by another Potluck program "
                             f"(pid {running['pid']}, e.g. `potluck serve --swarm`), which offers no way in; stop it, "
                             "or run the swarm in the Potluck app, whose node lets this PC's terminal programs in")
        return NodeClient(path, node.info.name)
    return join_as_member(node, model=model, quant=quant, timeout=timeout, push=push, dtype=dtype)


def join_as_member(node: secure.SwarmNode, *, model: str | None = None, quant: str | None = None,
                   timeout: float = 20.0, push: bool = True, dtype: str = "float32") -> MemberModel:
    """Join `node`'s swarm as this PC's member, as a client (no blocks served, any port)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(secure.node_lock(node.swarm_id))
        except secure.NodeAlreadyRunning:
            raise MemberBusy(f"this PC's identity in {node.info.name!r} is in use by another Potluck program on "
                             "this PC; stop it first, or wait for it to finish") from None
        setup = lifecycle.prepare_member(node.swarm_id, host=_client_host())
        if not setup.initial_peers:
            known = len(setup.node.initial_peers())
            raise lifecycle.LifecycleError(f"no member of {node.info.name!r} answers right now ({known} known "
                                           "address(es) tried): is a friend's Potluck running?")
        from potluck.core.client.model import DistributedModelForCausalLM
        from potluck.core.swarm.dht import start_dht

        dht = start_dht(dataclasses.replace(setup.dht_options(client_mode=True), port=0))
        stack.callback(dht.shutdown)
        info = setup.node.info
        name = model or info.model_id
        revision = (info.model_revision or None) if name == info.model_id else None
        client = DistributedModelForCausalLM.from_pretrained(name, dht=dht, revision=revision, dtype=dtype, push=push,
                                                             timeout=timeout, quant=quant or info.quant)
        return MemberModel(client, name, stack.pop_all().close)


def _client_host() -> str:
    """Where a client-mode member listens: this PC's tailnet address (or POTLUCK_HOST), else loopback."""
    try:
        return lifecycle.choose_listen_address(None).host
    except lifecycle.LifecycleError:
        return lifecycle.LOOPBACK
