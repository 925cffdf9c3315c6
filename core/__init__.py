"""Potluck's engine: models split into block ranges, block servers, the swarm client and the node process.

Nothing here imports Qt. Importing this package has no side effects and imports no heavy libraries; each
submodule imports torch/transformers/hivemind only where it needs them.
"""

__version__ = "0.1.0"
