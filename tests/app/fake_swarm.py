"""The fake node's swarm (used by fake_node.py): answers the swarm page's commands with the real protocol, keeping
a small swarm in memory. Codes it makes are real invite codes (core/swarm/invite.py); codes it is given are
checked with the app's own words (app/words.code_problem), as the real node's `join` would refuse them.

Switches (environment):
  FAKE_NODE_SWARM=none            start in no swarm (a join or a switch puts it in one)
  FAKE_NODE_LOOPBACK=1            no Tailscale: an invite that is not "this PC only" is refused, as the real node does
  FAKE_NODE_JOIN_ERROR=TEXT       answer every join with this failure
  FAKE_NODE_REMOVED=1             once serving, this PC learns it was removed (state failed, view says so)
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import replace

from potluck.app.words import code_problem
from potluck.core import protocol
from potluck.core.protocol import NodeState
from potluck.core.swarm import codec
from potluck.core.swarm.invite import Invite, decode_invite, encode_invite

ME = "12D3KooWme"
CREATED_ID = "fedcba9876543210"
OTHER_ID = "00112233aabbccdd"


def peer(name: str) -> str:
    return codec.b58encode(b"\x12\x20" + hashlib.sha256(name.encode()).digest())


def member(peer_id: str, name: str, role: str = "member", online: bool = True, blocks=(0, 0), **extra):
    return protocol.SwarmMember(peer_id=peer_id, name=name, role=role, online=online,
                                state="online" if online else "offline", start_block=blocks[0], end_block=blocks[1],
                                last_seen=time.time() - (0 if online else 3 * 3600), **extra)


class FakeSwarm:
    def __init__(self, send, set_state) -> None:
        self.send, self.set_state = send, set_state
        self.env = os.environ
        self.known = [protocol.KnownSwarm(OTHER_ID, "Book club", "Qwen/Qwen2.5-7B-Instruct", False)]
        self.view = protocol.SwarmView(known=tuple(self.known))
        if self.env.get("FAKE_NODE_SWARM") != "none":
            self._enter_created("Friday night", "org/tiny-demo")

    # ---- the swarm this fake PC is in
    def _enter(self, swarm_id: str, name: str, model_id: str, created_here: bool, members) -> None:
        self.known = [k for k in self.known if k.swarm_id != swarm_id] + \
            [protocol.KnownSwarm(swarm_id, name, model_id, created_here)]
        self.view = protocol.SwarmView(
            swarm_id=swarm_id, name=name, model_id=model_id, model_here=model_id, created_here=created_here,
            model_is_path=model_id.startswith("/"), peer_id=ME, listen_host="100.101.1.7",
            secret_where="a private file (/home/sam/.config/Potluck/secrets)", members=tuple(members),
            known=tuple(self.known))

    def _enter_created(self, name: str, model_id: str) -> None:
        self._enter(CREATED_ID, name, model_id, True, [
            member(ME, "Sam's desktop", "owner", blocks=(12, 24), this_pc=True),
            member(peer("ana"), "Ana's desktop", blocks=(0, 14)),
            member(peer("ben"), "Ben's mini PC", "admin", blocks=(20, 28)),
            member(peer("cho"), "Cho's laptop", online=False),
        ])

    def configure(self, values: dict) -> None:
        code = self.env.get("POTLUCK_INVITE_CODE", "")
        if values.get("mode") == "join" and code and not code_problem(code) and code != self.env.get("FAKE_NODE_USED_CODE"):
            invite = decode_invite(code)
            if invite.swarm_id != self.view.swarm_id:
                self._joined(invite.swarm_name, invite.swarm_id, invite.model_id)
        elif values.get("mode") == "create" and values.get("swarm_name") and self.view.created_here:
            self.view = replace(self.view, name=values["swarm_name"], model_id=values.get("model", ""),
                                model_here=values.get("model", ""))

    def _joined(self, name: str, swarm_id: str, model_id: str) -> None:
        self._enter(swarm_id, name, model_id, False, [
            member(peer("ana"), "Ana's desktop", "owner", blocks=(0, 16)),
            member(ME, "Sam's desktop", blocks=(16, 32), this_pc=True),
        ])

    def serving(self) -> None:
        if self.env.get("FAKE_NODE_REMOVED") and self.view.swarm_id:
            self.view = replace(self.view, this_pc_removed=True, members=tuple(
                replace(m, active=False, online=False) if m.this_pc else m for m in self.view.members))
            self.send(self.view)
            self.set_state(NodeState.FAILED, f"This PC was removed from the swarm “{self.view.name}”. Ask a member "
                                             "for a new invite code and paste it on the Swarm page.")
            return
        self.send(self.view)

    # ---- commands
    def handle(self, cmd) -> bool:
        handlers = {protocol.SwarmRefresh: self._refresh, protocol.InviteCreate: self._invite,
                    protocol.InviteCancel: self._cancel, protocol.Revoke: self._revoke, protocol.Leave: self._leave,
                    protocol.Join: self._join, protocol.Switch: self._switch}
        handler = handlers.get(type(cmd))
        if handler is None:
            return False
        handler(cmd)
        return True

    def _result(self, cmd, ok: bool, message: str) -> None:
        self.send(protocol.SwarmResult(request_id=cmd.request_id, op=cmd.KIND.value, ok=ok, message=message,
                                       swarm_id=self.view.swarm_id))

    def _refresh(self, cmd) -> None:
        self.send(replace(self.view, request_id=cmd.request_id))

    def _invite(self, cmd: protocol.InviteCreate) -> None:
        if not self.view.swarm_id:
            return self._result(cmd, False, "This PC is not in a running swarm yet, so it cannot invite anyone.")
        loopback = bool(self.env.get("FAKE_NODE_LOOPBACK"))
        if loopback and not cmd.this_pc_only:
            return self._result(cmd, False, "Friends cannot reach this PC: it listens on 127.0.0.1 only, so a code "
                                            "would work on this PC alone. Tailscale is not installed. Install it from "
                                            "https://tailscale.com/download, sign in.")
        host = "127.0.0.1" if loopback else "100.101.1.7"
        invite = Invite(self.view.name, self.view.swarm_id, self.view.model_id or "org/tiny-demo", "",
                        (f"/ip4/{host}/tcp/31337/p2p/{peer('sam')}",), secrets.token_bytes(16),
                        int(time.time() + cmd.expires_seconds), cmd.max_uses or None)
        self.send(protocol.InviteMade(request_id=cmd.request_id, code=encode_invite(invite), invite_id=invite.invite_id,
                                      swarm_name=invite.swarm_name, expires_at=invite.expires_at,
                                      max_uses=cmd.max_uses, bootstrap=invite.bootstrap, this_pc_only=loopback))
        info = protocol.InviteInfo(invite.invite_id, invite.expires_at, cmd.max_uses, cmd.max_uses)
        self.view = replace(self.view, invites=self.view.invites + (info,))
        self.send(self.view)

    def _cancel(self, cmd: protocol.InviteCancel) -> None:
        self.view = replace(self.view, invites=tuple(replace(i, cancelled=True) if i.invite_id == cmd.invite_id else i
                                                     for i in self.view.invites))
        self._result(cmd, True, f"The code {cmd.invite_id} no longer works.")
        self.send(self.view)

    def _revoke(self, cmd: protocol.Revoke) -> None:
        target = next((m for m in self.view.members if m.peer_id == cmd.peer_id), None)
        if target is None:
            return self._result(cmd, False, f"No member matches {cmd.peer_id!r}.")
        self.view = replace(self.view, members=tuple(replace(m, active=False, online=False) if m is target else m
                                                     for m in self.view.members))
        self._result(cmd, True, f"{target.name} was removed from the swarm. Within a minute no member accepts it any "
                                "more.")
        self.send(self.view)

    def _leave(self, cmd: protocol.Leave) -> None:
        self.known = [k for k in self.known if k.swarm_id != self.view.swarm_id]
        self.view = protocol.SwarmView(known=tuple(self.known))
        self.set_state(NodeState.STOPPED, "Not in a swarm. Join one with a code, or start a new one.")
        self._result(cmd, True, "This PC left the swarm and forgot its secret.")
        self.send(self.view)

    def _join(self, cmd: protocol.Join) -> None:
        problem = self.env.get("FAKE_NODE_JOIN_ERROR") or code_problem(cmd.code)
        if problem:
            return self._result(cmd, False, problem)
        invite = decode_invite(cmd.code)
        self._joined(invite.swarm_name, invite.swarm_id, invite.model_id)
        if cmd.model:
            self.view = replace(self.view, model_here=cmd.model)
        self._result(cmd, True, f"Joined “{invite.swarm_name}”.")
        self.send(self.view)
        self.set_state(NodeState.SERVING, "Serving blocks 16–31 of 32")

    def _switch(self, cmd: protocol.Switch) -> None:
        known = next((k for k in self.known if k.swarm_id == cmd.swarm_id), None)
        if known is None:
            return self._result(cmd, False, f"this PC knows no swarm {cmd.swarm_id!r}.")
        self._enter(known.swarm_id, known.name, known.model_id, known.created_here,
                    [member(ME, "Sam's desktop", this_pc=True, blocks=(0, 8))])
        self._result(cmd, True, f"Now in “{known.name}”.")
        self.send(self.view)
