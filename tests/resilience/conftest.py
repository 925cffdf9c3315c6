import pytest

from potluck.core.model.tiny import make_tiny_model


@pytest.fixture(scope="session")
def resilience_model(tmp_path_factory):
    """A tiny Llama with 6 blocks (hidden 64)."""
    return make_tiny_model("llama", tmp_path_factory.mktemp("res") / "llama", layers=6, hidden=64, seed=11, shard_size="40KB")
