"""NodeProcess: the GUI's owner of the node child process (a QProcess speaking core.protocol over stdio).

One lifecycle enum (`NodeState`) describes it. The node's own state events drive it while the process lives; the
owner adds what only it can know: launching (STARTING until the node says otherwise), a crash (restart after a
growing delay, at most `RestartPolicy.max_restarts` times in its window, then FAILED with the log tail kept), and a
stop (STOPPING: shutdown command, then terminate, then kill, each after its timeout, then STOPPED).

Every event the node writes becomes a Qt signal. Lines that are not protocol messages are kept in the log tail and
reported through `problem`; they never stop the reader.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from potluck.app.node_command import NodeTimeouts, RestartPolicy
from potluck.core import protocol
from potluck.core.protocol import NodeState

LOG_TAIL_LINES = 50
MAX_PENDING_BYTES = protocol.MAX_LINE_CHARS + 1  # an unfinished stdout line longer than this is dropped


class NodeProcess(QObject):
    state_changed = Signal(object)  # NodeState; read `detail` for the words
    hello_received = Signal(object)  # protocol.Hello
    sizing_received = Signal(object)  # protocol.Sizing
    stats_received = Signal(object)  # protocol.Stats
    token_received = Signal(object)  # protocol.Token
    done_received = Signal(object)  # protocol.Done
    alert_received = Signal(object)  # protocol.Alert
    error_received = Signal(object)  # protocol.Error
    swarm_event_received = Signal(object)  # protocol.SwarmView, InviteMade or SwarmResult (the swarm page's)
    progress_received = Signal(object)  # protocol.Progress (downloading and loading the model)
    history_received = Signal(object)  # protocol.History (totals per day)
    log_line = Signal(str)  # every line for the log: node stderr, log events, unreadable lines, our notes
    problem = Signal(str)  # something went wrong on the GUI side of the pipe (plain words)
    stopped = Signal()  # a stop() finished: the process is gone

    def __init__(
        self,
        command: Sequence[str],
        environment: Callable[[], Mapping[str, str]] = dict,
        config_values: Callable[[], Mapping[str, Any]] | None = None,
        timeouts: NodeTimeouts | None = None,
        restart_policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        if not command:
            raise ValueError("the node command is empty")
        self._command = list(command)
        self._environment = environment
        self._config_values = config_values
        self._timeouts = timeouts or NodeTimeouts()
        self._restart_policy = restart_policy or RestartPolicy()
        self._clock = clock
        self._state = NodeState.STOPPED
        self._detail = ""
        self._serve_wanted = True  # the owner's wish: serve (start/resume) or not (pause)
        self._exit_note = ""  # why we ended the process ourselves, for the crash detail
        self._process: QProcess | None = None
        self._stdout_pending = bytearray()
        self._stderr_pending = bytearray()
        self._log_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.hello: protocol.Hello | None = None
        self.last_stats: protocol.Stats | None = None
        self.last_sizing: protocol.Sizing | None = None
        self.last_progress: protocol.Progress | None = None
        self.last_history: protocol.History | None = None
        self._hello_timer = self._single_shot(self._on_hello_timeout)
        self._restart_timer = self._single_shot(self._launch)
        self._stop_timer = self._single_shot(self._escalate_stop)
        self._stop_step = 0  # 0 waiting after shutdown, 1 after terminate, 2 after kill

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> NodeState:
        return self._state

    @property
    def detail(self) -> str:
        return self._detail

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning

    def log_tail(self) -> list[str]:
        return list(self._log_tail)

    def start(self) -> None:
        """Serve: launch the node if it is not running (resets the restart budget), or tell it to start."""
        self._serve_wanted = True
        if self._state is NodeState.STOPPING:
            return
        if self.is_running:
            if self.hello is not None:
                self.send(protocol.Start())
            return
        self._restart_timer.stop()
        self._restart_policy.reset()
        self._launch()

    def pause(self) -> None:
        """Stop serving after the running sessions finish (the node drains first); the process stays up."""
        self._serve_wanted = False
        if self.is_running and self.hello is not None:
            self.send(protocol.Pause())  # otherwise the wish is enough: a (re)starting node is not told to start

    def resume(self) -> None:
        self._serve_wanted = True
        if self._state is NodeState.STOPPED and self.is_running:
            self.send(protocol.Start())
        elif not self.is_running:
            self.start()
        else:
            self.send(protocol.Resume())

    def drain(self) -> None:
        self.send(protocol.Drain())

    def refresh(self) -> None:
        self.send(protocol.Refresh())

    def set_config(self, values: Mapping[str, Any]) -> bool:
        return self.send(protocol.SetConfig(values=dict(values)))

    def stop(self) -> None:
        """Graceful stop: shutdown command, then terminate, then kill, each after its timeout. Emits `stopped`."""
        self._restart_timer.stop()
        self._hello_timer.stop()
        if not self.is_running:
            self._set_state(NodeState.STOPPED, "")
            self.stopped.emit()
            return
        if self._state is NodeState.STOPPING:
            return
        self._set_state(NodeState.STOPPING, "Stopping the node")
        self._exit_note = "stopped on request"
        self._stop_step = 0
        self.send(protocol.Shutdown())
        self._stop_timer.start(self._timeouts.shutdown_ms)

    def stop_blocking(self) -> None:
        """The same escalation, waiting in place: for the last moments of the app, when no event loop runs."""
        process = self._process
        if process is None or not self.is_running:
            return
        self._set_state(NodeState.STOPPING, "Stopping the node")
        self._exit_note = "stopped on request"
        self.send(protocol.Shutdown())
        for step, wait_ms in ((None, self._timeouts.shutdown_ms), (process.terminate, self._timeouts.terminate_ms),
                              (process.kill, self._timeouts.kill_ms)):
            if step is not None:
                step()
            if process.waitForFinished(wait_ms):
                break

    def send(self, message: protocol.Message) -> bool:
        """Write one command to the node. False (and a `problem`) when the node is not running."""
        if not self.is_running:
            self.problem.emit(f"The node is not running, so “{message.KIND.value}” was not sent.")
            return False
        assert self._process is not None
        self._process.write((protocol.encode(message) + "\n").encode("utf-8"))
        return True

    # ------------------------------------------------------------------ launching and exits

    def _single_shot(self, slot: Callable[[], None]) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
        return timer

    def _launch(self) -> None:
        if self.is_running:
            return
        restarts = self._restart_policy.restarts_in_window(self._clock())
        limit = self._restart_policy.max_restarts
        note = f"Restarting the node (attempt {restarts} of {limit})" if restarts else "Starting the node"
        self._set_state(NodeState.STARTING, note)
        self._note(note.lower())
        self.hello = None
        self.last_stats = None
        self._exit_note = ""
        self._stdout_pending.clear()
        self._stderr_pending.clear()
        process = QProcess(self)
        env = QProcessEnvironment()
        for name, value in self._environment().items():
            env.insert(name, value)
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_process_error)
        self._process = process
        self._hello_timer.start(self._timeouts.hello_ms)
        process.start(self._command[0], self._command[1:])

    def _on_process_error(self, error: QProcess.ProcessError) -> None:
        if error is QProcess.ProcessError.FailedToStart:  # no `finished` follows this one
            self._exit_note = f"could not start {self._command[0]!r}: {self.sender().errorString()}"
            self._after_exit(self.sender())

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        process = self.sender()
        self._read_stdout()
        self._read_stderr()
        self._flush_partial_lines()
        how = "crashed" if exit_status is QProcess.ExitStatus.CrashExit else f"exited with code {exit_code}"
        self._note(f"node {how}" + (f" ({self._exit_note})" if self._exit_note else ""))
        if not self._exit_note:
            self._exit_note = how
        self._after_exit(process)

    def _after_exit(self, process: QObject) -> None:
        if process is not self._process:
            return
        self._process = None
        process.deleteLater()
        self._hello_timer.stop()
        self._stop_timer.stop()
        self.last_stats = None
        self.hello = None
        if self._state is NodeState.STOPPING:
            self._set_state(NodeState.STOPPED, "")
            self.stopped.emit()
            return
        now = self._clock()
        delay_seconds = self._restart_policy.next_delay_seconds(now)
        if delay_seconds is None:
            tries = self._restart_policy.max_restarts
            again = f" and was restarted {tries} times" if tries else ""
            self._set_state(NodeState.FAILED, f"The node stopped unexpectedly ({self._exit_note}){again}; "
                            "it has been left off. See the log for details.")
            return
        self._restart_policy.record_restart(now)
        self._set_state(NodeState.STARTING, f"The node stopped unexpectedly ({self._exit_note}); restarting")
        self._restart_timer.start(int(delay_seconds * 1000))

    def _on_hello_timeout(self) -> None:
        if self.is_running and self.hello is None:
            seconds = self._timeouts.hello_ms / 1000
            self._exit_note = f"it did not report in within {seconds:g} s"
            self._process.kill()

    def _escalate_stop(self) -> None:
        process = self._process
        if process is None:
            return
        if self._stop_step == 0:
            self._note("the node did not stop in time; terminating it")
            self._stop_step = 1
            process.terminate()
            self._stop_timer.start(self._timeouts.terminate_ms)
        elif self._stop_step == 1:
            self._note("the node ignored terminate; killing it")
            self._stop_step = 2
            process.kill()
            self._stop_timer.start(self._timeouts.kill_ms)
        else:  # the OS never reported the exit: stop waiting rather than hang the app
            self._note("the node did not report its exit after kill; giving up waiting")
            self._after_exit(process)

    # ------------------------------------------------------------------ reading the pipes

    def _read_stdout(self) -> None:
        if self._process is not None:
            self._stdout_pending += bytes(self._process.readAllStandardOutput())
        for line in self._take_lines(self._stdout_pending, "output"):
            self._handle_line(line)

    def _read_stderr(self) -> None:
        if self._process is not None:
            self._stderr_pending += bytes(self._process.readAllStandardError())
        for line in self._take_lines(self._stderr_pending, "error output"):
            self._log(line.decode("utf-8", errors="replace").rstrip())

    def _take_lines(self, pending: bytearray, channel: str) -> list[bytes]:
        *lines, rest = bytes(pending).split(b"\n")
        pending[:] = rest
        if len(pending) > MAX_PENDING_BYTES:
            self._report(f"The node wrote a line over {MAX_PENDING_BYTES} bytes on its {channel}; it was dropped.")
            pending.clear()
        return [line.rstrip(b"\r") for line in lines if line.strip()]

    def _flush_partial_lines(self) -> None:
        if self._stdout_pending.strip():
            self._handle_line(bytes(self._stdout_pending))
        if self._stderr_pending.strip():
            self._log(self._stderr_pending.decode("utf-8", errors="replace").rstrip())
        self._stdout_pending.clear()
        self._stderr_pending.clear()

    def _handle_line(self, line: bytes) -> None:
        try:
            event = protocol.decode_event(line)
        except protocol.ProtocolError as exc:
            text = line.decode("utf-8", errors="replace")
            self._log(f"[unreadable line from the node] {text}")
            self._report(f"The node sent a line that is not a protocol message ({exc}).")
            return
        self._dispatch(event)

    def _dispatch(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Hello):
            self._on_hello(event)
        elif isinstance(event, protocol.State):
            self._on_state_event(event)
        elif isinstance(event, protocol.Stats):
            self.last_stats = event
            self.stats_received.emit(event)
        elif isinstance(event, protocol.Sizing):
            self.last_sizing = event
            self.sizing_received.emit(event)
        elif isinstance(event, protocol.Token):
            self.token_received.emit(event)
        elif isinstance(event, protocol.Done):
            self.done_received.emit(event)
        elif isinstance(event, protocol.Alert):
            self._log(f"[{event.level.value}] {event.text}")
            self.alert_received.emit(event)
        elif isinstance(event, protocol.Error):
            self._log(f"[error] {event.message}")
            self.error_received.emit(event)
        elif isinstance(event, protocol.Log):
            self._log(event.line)
        elif isinstance(event, (protocol.SwarmView, protocol.InviteMade, protocol.SwarmResult)):
            self.swarm_event_received.emit(event)
        elif isinstance(event, protocol.Progress):
            self.last_progress = event
            self.progress_received.emit(event)
        elif isinstance(event, protocol.History):
            self.last_history = event
            self.history_received.emit(event)

    def _on_hello(self, hello: protocol.Hello) -> None:
        self._hello_timer.stop()
        self.hello = hello
        self._note(f"node {hello.version} is up (pid {hello.pid})")
        self.hello_received.emit(hello)
        if self._config_values is not None:
            self.send(protocol.SetConfig(values=dict(self._config_values())))
        if self._serve_wanted:
            self.send(protocol.Start())

    def _on_state_event(self, event: protocol.State) -> None:
        if self._state is NodeState.STOPPING:
            return  # we are ending it; the node's own stopping/stopped steps change nothing here
        self._set_state(event.state, event.detail)

    # ------------------------------------------------------------------ helpers

    def _set_state(self, state: NodeState, detail: str) -> None:
        if (state, detail) == (self._state, self._detail):
            return
        changed = state is not self._state
        self._state, self._detail = state, detail
        if changed or detail:
            self.state_changed.emit(state)

    def _log(self, line: str) -> None:
        self._log_tail.append(line)
        self.log_line.emit(line)

    def _note(self, text: str) -> None:
        self._log(f"[potluck] {text}")

    def _report(self, text: str) -> None:
        self._note(text)
        self.problem.emit(text)
