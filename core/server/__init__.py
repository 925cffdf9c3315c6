"""The block server: hosts a range of blocks and serves inference sessions over them.

- `server.py`           `BlockServer`: handlers registered, announcements, sessions, its range and its state.
- `handlers.py`         the stream handlers (sessions, pushes, pings), validating every message first.
- `sessions.py`         a session's KV cache under a token budget, and exact steps at absolute positions.
- `sizing.py`           how many blocks fit in free memory, and when to shed or grow (pure, table-tested).
- `block_selection.py`  which range fills the swarm's gaps, and when moving is worth it (pure, table-tested).
- `ranges.py`           what a range policy needs of a server; reusing shared blocks when a range changes.
- `resize.py`           the runtime-resize policy (memory pressure). `rebalance.py`: the rebalancing policy.
- `memory.py`           free VRAM or available RAM.
- `runner.py`           a server as a process: choose, load, join, serve until told to stop.
"""
