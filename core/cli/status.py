"""`potluck status`: per block, the servers hosting it, with warnings for blocks with zero or one server."""

from __future__ import annotations

import argparse
import asyncio

from potluck.core.cli.common import print_json
from potluck.core.client.suspects import read_suspects
from potluck.core.model.checkpoint import open_checkpoint
from potluck.core.swarm.status import status_json, status_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="which servers host which blocks")
    p.add_argument("--initial-peers", nargs="+", required=True, metavar="MADDR")
    p.add_argument("--model", default=None, help="only this model (default: every model announced in the swarm)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=status)


def status(args: argparse.Namespace) -> int:
    from potluck.core.swarm import dht as swarm_dht
    dht = swarm_dht.start_dht(swarm_dht.DHTOptions(initial_peers=tuple(args.initial_peers), client_mode=True))
    try:
        async def collect():
            models = await swarm_dht.fetch_models(dht)
            if args.model is not None:
                uid = args.model if args.model in models else open_checkpoint(args.model).uid
                models = {uid: models[uid]} if uid in models else {}
            return {uid: (n, await swarm_dht.fetch_records(dht, uid, range(n))) for uid, n in models.items()}

        found = asyncio.run(collect())
    finally:
        dht.shutdown()
    suspects = {peer: suspicion.detail for peer, suspicion in read_suspects().items()}
    if args.json:
        print_json({"models": [status_json(uid, n, by_block, suspects) for uid, (n, by_block) in found.items()]})
    elif not found:
        print("no model is announced in this swarm right now")
    else:
        print("\n\n".join(status_text(uid, n, by_block, suspects) for uid, (n, by_block) in found.items()))
    return 0
