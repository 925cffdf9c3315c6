"""The node process the desktop app runs (`potluck node`), speaking core/protocol.py on stdin/stdout.

- `process.py`  the entry: says hello, then runs the control loop. `stdio.py`: reading and writing the protocol,
                the log file, watching the parent.
- `control.py`  the control loop: commands in, events out, one state machine.
- `config.py`   the node's settings and what a change of them requires (pure).
- `network.py`  the node's DHT in an open swarm. `private.py`: in a private swarm (via core/swarm/lifecycle.py).
- `serving.py`  one serving period: size, choose, load, serve, drain, release memory.
- `plan.py`     how many blocks and why, in the owner's words (pure). `stats.py`: what the dashboard shows (pure).
- `chat.py`     replies for the app's chat window through the swarm. `loopback.py`: reaching this PC's own server.
"""
