"""`potluck serve`'s progress bar (core/cli/progress.py): downloads and blocks on one terminal line, and for real
on a pseudo-terminal while serving the tiny model."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from potluck.core.cli.progress import TerminalProgress
from potluck.core.model.progress import DownloadStep

GIB = 2**30


def test_the_bar_counts_blocks_and_bytes_and_rewrites_one_line():
    out = io.StringIO()
    bar = TerminalProgress(out, interval_seconds=0.0)
    bar.begin(10, [GIB, GIB, 2 * GIB])
    bar.on_download(DownloadStep("model-00002-of-00004.safetensors", GIB // 2, 2 * GIB))
    bar.on_block(10)
    bar.on_block(11)
    bar.on_block(12)
    lines = out.getvalue().split("\r")[1:]
    assert lines[0].startswith("Loading blocks 0/3 [" + "." * 30 + "]   0% 0 bytes of 4.0 GiB")
    assert lines[1].startswith("Downloading model-00002-of-00004.safetensors [" + "#" * 8)
    assert "25% 0.50 GiB of 2.0 GiB" in lines[1]
    assert lines[2].startswith("Loading blocks 1/3") and "25% 1.0 GiB of 4.0 GiB" in lines[2]
    assert lines[-1].rstrip(" ").endswith("100% 4.0 GiB of 4.0 GiB\n") and lines[-1].startswith("Loading blocks 3/3")
    assert len(lines[1]) <= len(lines[2]) or lines[2].endswith(" ")  # a shorter line blanks the longer one's tail


def test_downloads_are_shown_at_most_every_interval():
    out = io.StringIO()
    clock = iter([0.0, 0.01, 0.02, 0.5]).__next__
    bar = TerminalProgress(out, interval_seconds=0.1, monotonic=clock)
    for done in (1, 2, 3, 4):
        bar.on_download(DownloadStep("f", done, 10))
    assert out.getvalue().count("\r") == 2  # the first, then after the interval


@pytest.mark.slow
def test_potluck_serve_draws_the_bar_on_a_terminal(tiny_models, tmp_path):
    leader, follower = pty.openpty()
    env = {**os.environ, "POTLUCK_HOME": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "potluck.core", "serve", "--model", str(tiny_models["llama"]),
                                "--new-swarm", "--num-blocks", "2"], stdout=subprocess.PIPE, stderr=follower,
                               stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while b"Loading blocks 2/2" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    break
    finally:
        process.terminate()
        process.wait(30)
        os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert re.search(r"\rLoading blocks 0/2 \[\.{30}\]   0%", text), text[-2000:]
    assert re.search(r"\rLoading blocks 2/2 \[#{30}\] 100%", text), text[-2000:]
