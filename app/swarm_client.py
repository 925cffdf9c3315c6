"""SwarmClient: the swarm page's side of the node's swarm commands (core/protocol_swarm.py).

Each call sends one command with a fresh request id and returns that id; the answer arrives as a signal:
`view_changed` (a `swarm` event, also sent by the node on its own when the swarm changes), `invite_made`, and
`result` (a `swarm_result`: ok, or why not in plain words). A command the node cannot receive (not running) is
answered at once with a failed result, so no caller waits forever. `last_view` is the latest view.
"""

from __future__ import annotations

import itertools

from PySide6.QtCore import QObject, QTimer, Signal

from potluck.app.node_process import NodeProcess
from potluck.core import protocol

NODE_DOWN = ("Potluck's node is not running right now. Choose Resume serving (or Try again) in the tray menu, "
             "then try again.")


class SwarmClient(QObject):
    view_changed = Signal(object)  # protocol.SwarmView
    invite_made = Signal(object)  # protocol.InviteMade
    result = Signal(object)  # protocol.SwarmResult

    def __init__(self, node: NodeProcess, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._node = node
        self._ids = itertools.count(1)
        self.last_view: protocol.SwarmView | None = None
        self.pending: dict[str, str] = {}  # request id -> the command's kind, until answered
        node.swarm_event_received.connect(self._on_event)

    @property
    def node_ready(self) -> bool:
        return self._node.is_running and self._node.hello is not None

    def refresh(self) -> str:
        return self._send(protocol.SwarmRefresh, {})

    def create_invite(self, expires_seconds: int, max_uses: int, this_pc_only: bool) -> str:
        return self._send(protocol.InviteCreate, {"expires_seconds": expires_seconds, "max_uses": max_uses,
                                                  "this_pc_only": this_pc_only})

    def cancel_invite(self, invite_id: str) -> str:
        return self._send(protocol.InviteCancel, {"invite_id": invite_id})

    def revoke(self, peer_id: str) -> str:
        return self._send(protocol.Revoke, {"peer_id": peer_id})

    def leave(self, swarm_id: str = "") -> str:
        return self._send(protocol.Leave, {"swarm_id": swarm_id})

    def join(self, code: str, model: str = "", pc_name: str = "") -> str:
        return self._send(protocol.Join, {"code": code, "model": model, "pc_name": pc_name})

    def switch(self, swarm_id: str, model: str = "") -> str:
        return self._send(protocol.Switch, {"swarm_id": swarm_id, "model": model})

    def _send(self, kind: type, fields: dict) -> str:
        request_id = f"swarm-{next(self._ids)}"
        message = kind(request_id=request_id, **fields)
        self.pending[request_id] = message.KIND.value
        if not self.node_ready or not self._node.send(message):
            failed = protocol.SwarmResult(request_id=request_id, op=message.KIND.value, ok=False, message=NODE_DOWN)
            QTimer.singleShot(0, lambda: self._on_event(failed))
        return request_id

    def _on_event(self, event) -> None:
        request_id = getattr(event, "request_id", "")
        self.pending.pop(request_id, None)
        if isinstance(event, protocol.SwarmView):
            self.last_view = event
            self.view_changed.emit(event)
        elif isinstance(event, protocol.InviteMade):
            self.invite_made.emit(event)
        elif isinstance(event, protocol.SwarmResult):
            self.result.emit(event)
