"""The client: how a token's hidden state travels through the swarm (core/client/model.py is the public face).

- `routing.py`      the fastest chain over the servers' announcements (pure, table-tested), replacement routes.
- `backoff.py`      peers skipped for a while after failing, with a doubling back-off (pure).
- `swarm_view.py`   what a client knows of the swarm: records, bans, measured round trips, the routes it takes.
- `chain.py`        the streams of one session (one per server), steps, replays, history, relinks.
- `inference.py`    an inference session that survives servers dying, stalling or draining (fail-over).
- `spot_checks.py`  spot checks of friends' compute: which steps, tolerances, who was wrong (pure);
  `checker.py` runs a check beside a session; `suspects.py` this PC's file of servers caught computing wrong.
- `private.py`      private chats: the first and last blocks on this PC, the swarm runs the middle.
- `sampling.py`     greedy and sampled token choice (temperature, top-k, top-p, repetition penalty, seed).
- `model.py`        `DistributedModelForCausalLM`: from_pretrained / generate, as `from potluck import …`.
"""
