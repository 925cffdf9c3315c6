"""A `potluck serve` whose blocks compute wrong: the test-only fault hook for the cross-process spot-check test.

Run as `python lying_server.py <any program words> serve …`: it wraps BlockServer.compute in this process only
(the real outputs plus a fixed direction of 0.3 × their norm), then runs the command line from `serve` on. Nothing
in the engine knows about it; production code cannot reach it.
"""

from __future__ import annotations

import sys

import torch

from potluck.core.cli.main import main
from potluck.core.server.server import BlockServer

SIZE = 0.3


def lie() -> None:
    real = BlockServer.compute
    direction = None

    async def compute(self, session, position, hidden):
        nonlocal direction
        out = await real(self, session, position, hidden)
        if direction is None:
            direction = torch.randn(out.shape[-1], generator=torch.Generator().manual_seed(11))
            direction /= direction.norm()
        return out + SIZE * out.norm(dim=-1, keepdim=True) * direction.to(out.dtype)

    BlockServer.compute = compute


if __name__ == "__main__":
    lie()
    argv = sys.argv[1:]
    sys.exit(main(argv[argv.index("serve"):]))
