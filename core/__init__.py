"""Potluck's engine, installed as `potluck.core`: models split into block ranges, block servers, the swarm client,
private swarms and the node process the desktop app runs. Nothing here imports Qt.

Packages and modules, from the bottom layer up (a layer imports only those below it; tests/unit/test_layers.py
checks it):

- `errors`, `numbers`, `paths`, `program`, `typed_json`, `secrets`: small foundations, standard library only.
- `protocol`: the GUI ↔ node messages (JSON lines). `wire/`: the data plane's frames and control messages.
- `model/`: architecture families, checkpoints (safetensors, GGUF, the hub), quantized weights, tiny models.
- `swarm/`: records and the DHT, invite codes, admission, member lists, Tailscale, and `lifecycle`: the
  private-swarm use cases (create, join, take part) that the CLI and the node share.
- `server/`: the block server, its sessions and handlers, sizing, block choice, range policies, the runner.
- `client/`: routing, the swarm view, the chain of streams, inference sessions with fail-over, generation.
- `node/`: the node process behind the app (control loop, serving periods, chat, stats).
- `localswarm`: servers as local processes (demo, tests, benchmarks). `cli/`: the command line, the top.

Importing this package has no side effects; each module imports torch, transformers or hivemind only where it
needs them.
"""

__version__ = "0.2.0"
