"""The Hugging Face hub path, for real, against a local server speaking the hub's file endpoints.

A server for some blocks downloads config.json, the weight index and only the shards holding its blocks.
"""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from potluck.core.model.checkpoint import CheckpointError
from potluck.core.model.loading import load_blocks, load_client_parts, open_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "friends/tiny-llama"


class FakeHub(http.server.ThreadingHTTPServer):
    def __init__(self, folder: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.folder, self.downloads = folder, []


class _Handler(http.server.BaseHTTPRequestHandler):
    def _file(self):
        prefix = f"/{REPO}/resolve/"
        if not self.path.startswith(prefix):
            return None
        revision, _, name = self.path[len(prefix):].partition("/")
        path = self.server.folder / name
        return path if revision in ("main", COMMIT) and path.is_file() else None

    def _headers(self, path):
        if path is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", '"' + hashlib.sha256(path.read_bytes()).hexdigest() + '"')
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        return True

    def do_HEAD(self):
        self._headers(self._file())

    def do_GET(self):
        path = self._file()
        if self._headers(path):
            self.server.downloads.append(path.name)
            self.wfile.write(path.read_bytes())

    def log_message(self, *args):
        pass


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


def test_only_the_needed_shards_are_downloaded(hub, tiny_models):
    spec = open_model(REPO)
    assert spec.checkpoint.revision == COMMIT and spec.uid == f"friends-tiny-llama@{COMMIT[:12]}"
    assert sorted(hub.downloads) == ["config.json", "model.safetensors.index.json"]

    names = list(spec.checkpoint.weight_map)
    wanted = {spec.checkpoint.weight_map[n] for i in (2, 3) for n in spec.family.block_tensor_names(names, i)}
    stack = load_blocks(spec, 2, 4)
    assert (stack.start, stack.end) == (2, 4)
    shards = {name for name in hub.downloads if name.endswith(".safetensors")}
    assert shards == wanted and len(shards) < len(set(spec.checkpoint.weight_map.values())) // 2

    local = load_blocks(open_model(str(tiny_models["llama"])), 2, 4)
    for mine, theirs in zip(stack.state_dict().values(), local.state_dict().values()):
        assert (mine == theirs).all()  # the downloaded bytes are the checkpoint's

    before = len(hub.downloads)
    load_blocks(open_model(REPO), 2, 4)
    assert [n for n in hub.downloads[before:] if n.endswith(".safetensors")] == []  # cached: not fetched again
    assert load_client_parts(spec).lm_head.weight.shape[0] == spec.config.vocab_size


def test_missing_repo_is_a_clear_error(hub):
    with pytest.raises(CheckpointError, match="friends/nope"):
        open_model("friends/nope")


def test_sizing_a_hub_model_fetches_its_config_only(hub, tiny_models):
    from potluck.core.model.catalog import size_of

    size = size_of(REPO)
    assert hub.downloads == ["config.json"]
    local = open_model(str(tiny_models["llama"]))
    assert size.num_blocks == local.num_blocks
    assert size.blocks_bytes["none"] == sum(local.block_bytes(local.native_dtype, i) for i in range(local.num_blocks))
