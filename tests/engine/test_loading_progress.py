"""Loading progress, for real: a hub download through a local server speaking the hub's file endpoints reports its
bytes, and building the blocks reports each block (core/model/progress.py, core/node/progress.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from potluck.core import protocol
from potluck.core.model.loading import load_blocks, open_model
from potluck.core.model.progress import reporting, terminal_bar
from potluck.core.node.progress import LoadProgress
from tests.engine.test_hub_download import REPO, FakeHub


@pytest.fixture
def hub(tiny_models, tmp_path, monkeypatch):
    server = FakeHub(Path(tiny_models["llama"]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.shutdown()


def test_a_hub_download_and_the_blocks_report_progress(hub, tiny_models):
    spec = open_model(REPO)
    events: list[protocol.Progress] = []
    loading = LoadProgress(events.append, 2, [spec.block_bytes(spec.native_dtype, i) for i in (2, 3)],
                           interval_seconds=0.0)
    loading.begin()
    with reporting(loading.on_download):
        load_blocks(spec, 2, 4, on_block=loading.on_block)
    downloads = [e for e in events if e.stage == "download"]
    shards = {name for name in hub.downloads if name.endswith(".safetensors")}
    files = {Path(tiny_models["llama"]) / name for name in shards}
    finished = {e.text.removeprefix("Downloading "): e.done_bytes for e in downloads if e.done_bytes == e.total_bytes}
    assert finished == {path.name: path.stat().st_size for path in files}  # every shard's last event: all its bytes
    assert all(protocol.decode_event(protocol.encode(e)) == e for e in events)
    loads = [(e.done_blocks, e.total_blocks) for e in events if e.stage == "load"]
    assert loads == [(0, 2), (1, 2), (2, 2)]
    assert events[-1].done_bytes == events[-1].total_bytes == loading.total_bytes > 0
    assert events[-1].text == "Loaded block 3"


def test_no_listener_no_bar(tiny_models):
    from potluck.core.model.progress import download_bar

    assert download_bar() is None
    with reporting(lambda step: None):
        assert download_bar() is not None
    assert download_bar() is None


@pytest.mark.parametrize("fraction, text", [(0.0, "[" + "." * 30 + "]   0%"), (0.5, "[" + "#" * 15 + "." * 15 + "]  50%"),
                                            (1.2, "[" + "#" * 30 + "] 100%")])
def test_terminal_bar(fraction, text):
    assert terminal_bar(fraction) == text
