"""The node's edges without a node: reading command lines, writing events to a pipe nobody reads, the parent
watch, and that the node's entry path imports nothing heavy before it says hello."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from potluck.core import protocol
from potluck.core.node.stdio import TOO_LONG, ParentWatch, ProtocolWriter, StdinReader


def read_all(chunks: list[bytes]) -> list:
    read_fd, write_fd = os.pipe()
    got: list = []
    done = threading.Event()
    reader = StdinReader(read_fd, lambda line: (got.append(line), line is None and done.set()))
    reader.start()
    for chunk in chunks:
        os.write(write_fd, chunk)
    os.close(write_fd)
    assert done.wait(10)
    os.close(read_fd)
    return got


def test_lines_are_split_however_they_arrive():
    assert read_all([b'{"a":1}\n{"b"', b':2}\r\n\n  \n{"c":3}']) == [b'{"a":1}', b'{"b":2}\r', b'{"c":3}', None]


def test_an_over_long_line_is_reported_once_and_skipped():
    big = b"x" * (protocol.MAX_LINE_CHARS + 10)
    got = read_all([b"first\n", big[: len(big) // 2], big[len(big) // 2:], b"\nafter\n"])
    assert got[0] == b"first" and got[1] is TOO_LONG and got[2:] == [b"after", None]


def test_a_closed_pipe_is_reported_once():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    closed = []
    writer = ProtocolWriter(os.fdopen(write_fd, "w"), on_closed=lambda: closed.append(True))
    assert writer.send(protocol.Log(line="x")) is False
    assert writer.send(protocol.Log(line="y")) is False
    assert closed == [True] and writer.closed


def test_events_are_whole_lines(tmp_path):
    path = tmp_path / "out"
    with open(path, "w") as stream:
        writer = ProtocolWriter(stream)
        assert writer.send(protocol.State(state=protocol.NodeState.SERVING, detail="Serving blocks 0–3\nof 4"))
    (line,) = path.read_text().splitlines()
    assert protocol.decode_event(line).detail == "Serving blocks 0–3\nof 4"


def test_parent_watch_notices_the_app_pid_disappearing():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert ParentWatch(lambda reason: None, {"POTLUCK_PARENT_PID": str(os.getpid())}).gone_reason() is None
    assert ParentWatch(lambda reason: None, {}).gone_reason() is None
    reason = ParentWatch(lambda reason: None, {"POTLUCK_PARENT_PID": str(gone.pid)}).gone_reason()
    assert reason == f"the app (pid {gone.pid}) is gone"


def test_the_node_entry_path_imports_no_engine_library():
    code = ("import sys, potluck.core.cli, potluck.core.cli.swarm, potluck.core.node.process, potluck.core.node.control, "
            "potluck.core.node.stats; "
            "heavy = sorted(m for m in ('torch', 'hivemind', 'transformers', 'PySide6') if m in sys.modules); "
            "print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
