import pytest

from potluck.core.model.tiny import make_tiny_model

ARCHS = ("llama", "mistral", "qwen2", "bloom", "qwen3", "qwen3_moe", "mixtral", "gpt_oss", "gemma3")
LAYERS = 6


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """One small sharded random-weight model per supported architecture (hidden 64, 6 blocks)."""
    root = tmp_path_factory.mktemp("models")
    return {arch: make_tiny_model(arch, root / arch, layers=LAYERS, hidden=64, seed=3, shard_size="40KB") for arch in ARCHS}
