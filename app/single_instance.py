"""SingleInstance: one app per user (and per config folder). The first launch holds a lock file and listens on a
local socket; a later launch finds the lock taken, asks the first to show its dashboard, and exits."""

from __future__ import annotations

import getpass
import hashlib
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

SHOW_MESSAGE = b"show\n"
CONNECT_TIMEOUT_MS = 2000


def instance_key(config_dir: Path) -> str:
    """A socket name private to this user and config folder (short: Unix socket paths are limited)."""
    digest = hashlib.sha256(f"{getpass.getuser()}\0{config_dir}".encode()).hexdigest()[:16]
    return f"potluck-{digest}"


class SingleInstance(QObject):
    show_requested = Signal()

    def __init__(self, key: str, lock_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._key = key
        lock_dir.mkdir(parents=True, exist_ok=True)
        self._lock = QLockFile(str(lock_dir / f"{key}.lock"))
        self._lock.setStaleLockTime(0)  # a lock is stale only when its process is gone
        self._server: QLocalServer | None = None

    def claim(self) -> bool:
        """True: we are the first instance and now listen. False: another one runs and was asked to show itself."""
        if not self._lock.tryLock(0):
            self._lock.removeStaleLockFile()
            if not self._lock.tryLock(0):
                self._ask_first_to_show()
                return False
        QLocalServer.removeServer(self._key)  # a socket file left by a crashed instance
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        server.newConnection.connect(self._on_connection)
        if not server.listen(self._key):
            raise OSError(f"cannot listen on local socket {self._key}: {server.errorString()}")
        self._server = server
        return True

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server.deleteLater()
            self._server = None
        self._lock.unlock()

    def _ask_first_to_show(self) -> None:
        socket = QLocalSocket()
        socket.connectToServer(self._key)
        if socket.waitForConnected(CONNECT_TIMEOUT_MS):
            socket.write(SHOW_MESSAGE)
            socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
            socket.disconnectFromServer()

    def _on_connection(self) -> None:
        while self._server is not None and self._server.hasPendingConnections():
            socket = self._server.nextPendingConnection()
            socket.readyRead.connect(self._on_ready_read)
            socket.disconnected.connect(socket.deleteLater)

    def _on_ready_read(self) -> None:
        socket = self.sender()
        if isinstance(socket, QLocalSocket) and bytes(socket.readAll()).startswith(SHOW_MESSAGE.strip()):
            self.show_requested.emit()
