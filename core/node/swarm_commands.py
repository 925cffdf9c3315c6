"""SwarmCommands: the swarm page's commands, run by the node's controller (core/node/control.py).

swarm_refresh, invite_create, invite_cancel and revoke work on the swarm store (on a thread) and answer at once;
leave, join and switch stop serving and change the network, so they run as the controller's lifecycle operations,
one at a time with start and pause (a start still loading is cancelled first). Every command is answered: a
`swarm` event for a refresh, an `invite` event for a made code, a `swarm_result` for the others and for any
failure, in plain words.

A join or switch that fails puts the node back where it was (the old swarm's settings, serving again if it was)
and says why; the app keeps its settings until the node says the new swarm works. The controller's tick calls
`tick` every few seconds: the app hears when the swarm changes, and a PC removed from its swarm stops serving,
says so (state failed) and waits for a new code. A removed PC learns it from its own list when the revocation
reaches it, or from the swarm's owner: every OWNER_CHECK_SECONDS a member asks the owner's node (over the secret
protocol's authenticated stream, core/swarm/rotation.py) and two "not a member" answers in a row mean removed. The
others refuse a removed PC's requests, so its own list may never hear of the revocation otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from potluck.core import protocol
from potluck.core.errors import PotluckError
from potluck.core.node import swarm_ops
from potluck.core.node.plan import NodeSetupError
from potluck.core.node.private import INVITE_ENV
from potluck.core.protocol import NodeState
from potluck.core.swarm import lifecycle, secure
from potluck.core.swarm.invite import InviteError, decode_invite, encode_invite
from potluck.core.swarm.store import SwarmStore

log = logging.getLogger(__name__)

COMMANDS = (protocol.SwarmRefresh, protocol.InviteCreate, protocol.InviteCancel, protocol.Revoke, protocol.Leave,
            protocol.Join, protocol.Switch)
QUICK_DRAIN_SECONDS = 5.0  # leaving or moving to another swarm: live sessions get this long to move
OWNER_CHECK_SECONDS = 20.0  # a member asks the swarm's owner this often whether it still counts this PC in
OWNER_CHECK_AFTER_SECONDS = 60.0  # ... once its network ran this long (the owner's list may lag a new member's join)


class SwarmCommands:
    def __init__(self, controller) -> None:
        self.ctl = controller
        self.last_seen: dict[str, float] = {}  # peer id -> unix seconds it was last seen online
        self._tasks: set[asyncio.Task] = set()
        self._facts: swarm_ops.SwarmFacts | None = None
        self._facts_monotonic = float("-inf")
        self._sent: protocol.SwarmView | None = None  # essentials of the last view sent
        self._removed_told: set[str] = set()
        self._owner_says_removed: set[str] = set()  # swarms whose owner twice answered "not a member"
        self._owner_check: tuple[object, float, int] | None = None  # (network, next check monotonic, refusals)
        self._owner_p2p = None  # (network, p2p replica) used to ask the owner; kept while the network lives

    @property
    def membership(self):
        """The swarm's signed member list as last read (None in an open swarm or before the first read)."""
        return getattr(self._facts, "membership", None)

    # ------------------------------------------------------------------ dispatch (on the loop)

    def handle(self, cmd) -> bool:
        """Start what `cmd` asks; False when it is not a swarm command."""
        if not isinstance(cmd, COMMANDS):
            return False
        if isinstance(cmd, (protocol.Leave, protocol.Join, protocol.Switch)):
            op = {protocol.Leave: self._leave, protocol.Join: self._join, protocol.Switch: self._switch}[type(cmd)]

            async def run(op=op, cmd=cmd) -> None:
                await self._guarded(cmd, op(cmd))

            if self.ctl._current_op == "start" and self.ctl._current_task is not None:
                self.ctl._current_task.cancel()  # stop loading the old swarm's blocks
            self.ctl.enqueue(run)
            return True
        work = {protocol.SwarmRefresh: self._refresh, protocol.InviteCreate: self._invite,
                protocol.InviteCancel: self._cancel_invite, protocol.Revoke: self._revoke}[type(cmd)](cmd)
        task = asyncio.create_task(self._guarded(cmd, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _guarded(self, cmd, work) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except PotluckError as exc:
            self._result(cmd, False, _sentence(str(exc)))
        except Exception as exc:  # a bug: still answered, so the page never waits forever
            log.exception("%s failed", cmd.KIND.value)
            self._result(cmd, False, f"That did not work: {type(exc).__name__}: {exc}")

    def _result(self, cmd, ok: bool, message: str) -> None:
        swarm = getattr(self.ctl.network, "swarm", None)
        self.ctl.send(protocol.SwarmResult(request_id=cmd.request_id, op=cmd.KIND.value, ok=ok, message=message,
                                           swarm_id=swarm.swarm_id if swarm is not None else ""))

    # ------------------------------------------------------------------ the view

    def _swarm_id(self) -> str:
        swarm = getattr(self.ctl.network, "swarm", None)
        return swarm.swarm_id if swarm is not None else self.ctl.config.swarm_id

    async def view(self, request_id: str = "", *, fresh: bool = False) -> protocol.SwarmView:
        swarm_id = self._swarm_id()
        stale = time.monotonic() - self._facts_monotonic >= swarm_ops.FACTS_PERIOD_SECONDS
        if fresh or stale or self._facts is None or (self._facts.info is None) != (not swarm_id) or \
                (self._facts.info is not None and self._facts.info.swarm_id != swarm_id):
            self._facts = await asyncio.to_thread(swarm_ops.swarm_facts, swarm_id)
            self._facts_monotonic = time.monotonic()
        network = self.ctl.network
        servers = self.ctl._stats().members if network is not None and network.dht is not None else ()
        view = swarm_ops.build_view(self._facts, servers=servers, last_seen=self.last_seen,
                                    listen_host=getattr(network, "host", "") or "",
                                    model_here=self.ctl.config.model, request_id=request_id)
        if view.swarm_id in self._owner_says_removed:
            view = dataclasses.replace(view, this_pc_removed=True)
        return view

    async def send_view(self, request_id: str = "", *, fresh: bool = False) -> protocol.SwarmView:
        view = await self.view(request_id, fresh=fresh)
        self._sent = swarm_ops.essentials(view)
        self.ctl.send(view)
        return view

    async def tick(self, stats: protocol.Stats | None) -> None:
        """Every stats period: note who is online, tell the app when the swarm changed, act on a removal."""
        now = time.time()
        for member in stats.members if stats is not None else ():
            if member.online:
                self.last_seen[member.peer_id] = now
        if not self._swarm_id() and self._sent is None:
            return
        await self._check_with_owner()
        view = await self.view()
        if view.this_pc_removed and view.swarm_id not in self._removed_told and self.ctl.network is not None:
            self._removed_told.add(view.swarm_id)  # stop serving as a lifecycle operation, after any in progress
            if self.ctl._current_op == "start" and self.ctl._current_task is not None:
                self.ctl._current_task.cancel()
            self.ctl.enqueue(lambda: self._removed(view))
        if swarm_ops.essentials(view) != self._sent:
            self._sent = swarm_ops.essentials(view)
            self.ctl.send(view)

    async def _check_with_owner(self) -> None:
        network = self.ctl.network
        node = getattr(network, "swarm", None)
        if node is None or network.dht is None:
            return
        if self._owner_check is None or self._owner_check[0] is not network:
            self._owner_check = (network, time.monotonic() + OWNER_CHECK_AFTER_SECONDS, 0)
        _network, due, refusals = self._owner_check
        if time.monotonic() < due or node.swarm_id in self._owner_says_removed:
            return
        refused = await self._owner_refuses(network, node)
        refusals = refusals + 1 if refused else 0
        self._owner_check = (network, time.monotonic() + OWNER_CHECK_SECONDS, refusals)
        if refusals >= 2:
            log.warning("the swarm's owner no longer counts this PC as a member")
            self._owner_says_removed.add(node.swarm_id)

    async def _owner_refuses(self, network, node) -> bool:
        """Whether the swarm's owner (another PC) answers that this PC is no member (False when unsure)."""
        from potluck.core.swarm.rotation import SecretService  # heavy: hivemind (the node's DHT runs already)

        membership = await asyncio.to_thread(node.membership)
        owner = getattr(membership, "owner", "")
        info = await asyncio.to_thread(node.store.get, node.swarm_id)
        addrs = [m for m in info.bootstrap if m.endswith("/p2p/" + owner)]
        if not owner or owner == node.peer_id or not addrs:
            return False
        if self._owner_p2p is None or self._owner_p2p[0] is not network:
            self._owner_p2p = (network, await network.dht.replicate_p2p())  # never closed while the DHT lives
        ask = {"op": "ask", "swarm_id": node.swarm_id, "epoch": getattr(info, "secret_epoch", 0)}
        reply = await SecretService(node).exchange(self._owner_p2p[1], owner, addrs, ask)
        return isinstance(reply, dict) and reply.get("code") == "not_a_member"

    async def _removed(self, seen: protocol.SwarmView) -> None:
        view = await self.view(fresh=True)  # queued behind other operations: a join since may have made it moot
        if not view.this_pc_removed or view.swarm_id != seen.swarm_id or self.ctl.network is None:
            return
        log.warning("this PC was removed from swarm %r", view.name)
        await self._stop_network()
        self.ctl.set_state(NodeState.FAILED, f"This PC was removed from the swarm “{view.name}”. Ask a member for a "
                                             "new invite code and paste it on the Swarm page.")
        await self.send_view(fresh=True)

    # ------------------------------------------------------------------ store work

    async def _refresh(self, cmd: protocol.SwarmRefresh) -> None:
        await self.send_view(cmd.request_id, fresh=True)

    def _joined_network(self, doing: str):
        network = self.ctl.network
        swarm = getattr(network, "swarm", None)
        if swarm is None or network.dht is None:
            why = f" {self.ctl.detail}" if self.ctl.state is NodeState.FAILED and self.ctl.detail else ""
            raise NodeSetupError(_sentence(f"This PC is not in a running swarm yet, so it cannot {doing}.{why}"))
        return network, swarm

    async def _invite(self, cmd: protocol.InviteCreate) -> None:
        network, swarm = self._joined_network("invite anyone")
        invite = await asyncio.to_thread(lifecycle.make_invite, swarm.swarm_id, network.maddrs(),
                                         expires_in_seconds=cmd.expires_seconds, max_uses=cmd.max_uses or None,
                                         this_pc_only=cmd.this_pc_only)
        only_here = all(lifecycle._is_loopback(lifecycle._maddr_host(m)) for m in invite.bootstrap)
        self.ctl.send(protocol.InviteMade(request_id=cmd.request_id, code=encode_invite(invite),
                                          invite_id=invite.invite_id, swarm_name=invite.swarm_name,
                                          expires_at=invite.expires_at, max_uses=invite.max_uses or 0,
                                          bootstrap=invite.bootstrap, this_pc_only=only_here))
        await self.send_view(fresh=True)

    async def _cancel_invite(self, cmd: protocol.InviteCancel) -> None:
        store = SwarmStore()

        def cancel() -> None:
            with secure.store_lock(store):
                store.cancel_invite(cmd.invite_id)

        await asyncio.to_thread(cancel)
        self._result(cmd, True, f"The code {cmd.invite_id} no longer works.")
        await self.send_view(fresh=True)

    async def _revoke(self, cmd: protocol.Revoke) -> None:
        network, swarm = self._joined_network("remove anyone")
        target = await asyncio.to_thread(lifecycle.revoke_member, swarm.swarm_id, cmd.peer_id)
        if getattr(network, "admit", None) is not None:
            network.admit.reload()
        name = target.name or target.peer_id[:12]
        self._result(cmd, True, f"{name} was removed from the swarm. Within a minute no member accepts it any more.")
        await self.send_view(fresh=True)

    # ------------------------------------------------------------------ leave, join, switch (lifecycle operations)

    async def _stop_network(self) -> None:
        """Stop serving (live sessions get a moment to move) and close the swarm connection."""
        ctl = self.ctl
        if ctl.serving is not None:
            await ctl._drain_and_stop(QUICK_DRAIN_SECONDS)
        network, ctl.network = ctl.network, None
        if network is not None:
            await network.close()
        ctl.spec, ctl._by_block, ctl._last_coverage = None, None, None

    async def _leave(self, cmd: protocol.Leave) -> None:
        current = self._swarm_id()
        swarm_id = cmd.swarm_id or current
        if not swarm_id:
            raise NodeSetupError("This PC is in no swarm, so there is nothing to leave.")
        if swarm_id == current:
            network = self.ctl.network
            if getattr(network, "swarm", None) is not None and network.dht is not None and \
                    await asyncio.to_thread(lifecycle.mark_leaving, swarm_id):
                await self._publish_list(network)
            await self._stop_network()
            self.ctl.config = dataclasses.replace(self.ctl.config, mode="join", swarm_id="", swarm_name="", model="")
            self.ctl._environ = {k: v for k, v in self.ctl._environ.items() if k != INVITE_ENV}
            self.ctl.set_state(NodeState.STOPPED, swarm_ops.NOT_IN_A_SWARM)
        await asyncio.to_thread(lifecycle.forget_swarm, swarm_id)
        self._result(cmd, True, "This PC left the swarm and forgot its secret.")
        await self.send_view(fresh=True)

    async def _publish_list(self, network) -> None:
        from potluck.core.swarm.services import MembershipSync  # heavy: hivemind (the node's DHT runs already)

        try:
            sync = MembershipSync(network.member.node, network.dht, [])
            await asyncio.wait_for(sync.publish(), swarm_ops.LEAVE_PUBLISH_SECONDS)
        except Exception as exc:  # leaving goes on: the others see this PC offline, and a member can revoke it
            log.info("could not tell the swarm that this PC leaves: %s", exc)

    async def _join(self, cmd: protocol.Join) -> None:
        try:
            invite = decode_invite(cmd.code)
        except InviteError as exc:
            raise NodeSetupError(str(exc)) from None
        if invite.swarm_id in self._owner_says_removed:  # this PC's own list never heard: leave it there first,
            await asyncio.to_thread(lifecycle.mark_leaving, invite.swarm_id)  # so the code makes a new identity
        config = dataclasses.replace(self.ctl.config, mode="join", swarm_id=invite.swarm_id,
                                     swarm_name=invite.swarm_name, model=cmd.model.strip(),
                                     pc_name=cmd.pc_name.strip() or self.ctl.config.pc_name)
        await self._move(cmd, config, {**self.ctl._environ, INVITE_ENV: cmd.code.strip()}, f"Joined “{invite.swarm_name}”.")

    async def _switch(self, cmd: protocol.Switch) -> None:
        info = await asyncio.to_thread(SwarmStore().get, cmd.swarm_id)
        config = dataclasses.replace(self.ctl.config, mode="create" if info.created_here else "join",
                                     swarm_id=info.swarm_id, swarm_name=info.name, model=cmd.model.strip())
        environ = {k: v for k, v in self.ctl._environ.items() if k != INVITE_ENV}
        await self._move(cmd, config, environ, f"Now in “{info.name}”.")

    async def _move(self, cmd, config, environ, done_words: str) -> None:
        """Leave the current network and take part in the one `config` names; on failure go back and say why."""
        ctl = self.ctl
        before = (ctl.config, ctl._environ, ctl.state, ctl.detail, ctl.serving is not None,
                  getattr(ctl.network, "swarm", None) is not None)
        await self._stop_network()
        ctl.config, ctl._environ = config, environ
        try:
            await ctl._join_swarm(await ctl._network())
        except NodeSetupError as exc:
            await self._stop_network()
            ctl.config, ctl._environ = before[0], before[1]
            self._result(cmd, False, _sentence(str(exc)))
            if before[4]:
                await ctl._op_start()
            elif before[5]:
                try:
                    await ctl._join_swarm(await ctl._network())
                finally:
                    ctl.set_state(before[2], before[3])
            else:
                ctl.set_state(NodeState.FAILED, _sentence(str(exc)))
            await self.send_view(fresh=True)
            return
        joined = self._swarm_id()
        self._owner_says_removed.discard(joined)  # a new identity there: what was said of the old one is past
        await self.send_view(fresh=True)  # before the removal check may look again
        self._removed_told.discard(joined)
        self._result(cmd, True, done_words)
        if before[2] is NodeState.PAUSED:
            ctl.set_state(NodeState.PAUSED, "Paused by you")
        else:
            await ctl._op_start()


def _sentence(text: str) -> str:
    """`text` ending as a sentence (messages from deeper layers may lack the full stop)."""
    text = text.strip()
    return text if not text or text[-1] in ".!?…" else text + "."
