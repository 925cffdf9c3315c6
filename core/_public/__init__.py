"""Potluck: run a large language model across friends' PCs, block by block.

This folder is installed as the top-level package `potluck` (pyproject.toml maps it); the engine is `potluck.core`
(the folder core/) and the desktop app `potluck.app` (the folder app/). The public Python API lives here:

    from potluck import DistributedModelForCausalLM

    model = DistributedModelForCausalLM.from_pretrained("org/model", initial_peers=["/ip4/…/p2p/…"])
    print(model.generate(prompt="Hello", max_new_tokens=20).text)

Importing `potluck` is light: the names below load torch and the client only when first used, so the GUI
(`potluck.app`, which never imports torch) can live in the same package.
"""

from __future__ import annotations

import importlib

__all__ = ["DistributedModelForCausalLM", "GenerationResult", "SwarmError", "__version__"]

_LAZY = {
    "DistributedModelForCausalLM": "potluck.core.client.model",
    "GenerationResult": "potluck.core.client.model",
    "SwarmError": "potluck.core.client.model",
}


def __getattr__(name: str):
    if name == "__version__":
        return importlib.import_module("potluck.core").__version__
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'potluck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
