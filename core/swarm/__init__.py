"""The swarm: who is in it, how to find them, and what they announce.

- `records.py`       the typed record a server announces per block (pure), and views over them.
- `dht.py`           starting a DHT, storing and reading records, rejoining after an outage.
- `streams.py`       opening a stream to a peer, with timeouts.
- `status.py`        `potluck status` in words and JSON (pure).
- `invite.py`        invite codes: typo-proof, versioned, carrying a one-time credential (pure).
- `codec.py`         base58 and varints for codes and identity files.
- `membership.py`    the member list: rules, roles and changes (pure); `member_list.py` its records and resolution.
- `signing.py`       signatures with a member's identity key (statements in the list, secret proofs).
- `store.py`         swarms, invites and lists on disk.
- `secure.py`        this PC's identity in a swarm, node locks, the member check handlers use.
- `admission.py`     the DHT's authorizer: only members read, write or join it, each on its own connection.
- `join.py`          the join handshake over an invite. `services.py`: member-list sync and the join handler.
- `rotation.py`      a new swarm secret after a revocation, handed to the members who remain.
- `reachability.py`  can a peer be dialled (and dialled back), with advice. `tailscale.py`: the tailnet address.
- `lifecycle.py`     the private-swarm use cases, once: create, join, take part as a member, tell the swarm.
"""
