"""`potluck api`: the pooled model as an OpenAI-compatible HTTP API (core/api/), for every app on this PC.

    potluck api --model org/model --initial-peers MADDR        # http://127.0.0.1:8000/v1
    potluck api --swarm "Friday club"                          # a private swarm, as this PC's member
    POTLUCK_API_KEY=… potluck api --swarm "Friday club" --host 0.0.0.0   # beyond this PC: only with a key

It prints `api http://HOST:PORT/v1` (the base URL to give an app) and `model ID`, then `ready`; Ctrl-C or SIGTERM
stops it (the replies still running are cancelled).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from potluck.core.api import responses
from potluck.core.api.app import create_app
from potluck.core.api.engine import CausalLMEngine
from potluck.core.api.gateway import NodeClient, NodeEngine
from potluck.core.api.server import API_KEY_ENV, DEFAULT_PORT, ApiServer, bind_tcp, check_listen
from potluck.core.cli.generating import SWARM_HELP, open_model_for


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="an OpenAI-compatible HTTP API over the swarm, for apps on this PC")
    p.add_argument("--model", help="a model folder, a .gguf file or a Hugging Face id (with --swarm: default the "
                   "swarm's model)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--initial-peers", nargs="+", metavar="MADDR")
    where.add_argument("--swarm", metavar="NAME", help=SWARM_HELP)
    where.add_argument("--local", action="store_true", help="run the whole model in this process")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this PC only; "
                   "any other address needs an API key)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}; 0: any)")
    p.add_argument("--api-key", default=None, help=f"require 'Authorization: Bearer KEY' (better: set {API_KEY_ENV}, "
                   "which other users of this PC cannot read from the process list)")
    p.add_argument("--quant", choices=("none", "int8", "int4"), default=None, help="the servers' weight precision "
                   "to route through (default: the one they announce); with --local how to run")
    p.add_argument("--dtype", default=None, help="hidden states on the wire (default float32); with --local what "
                   "the blocks compute in")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for any server before failing over")
    p.set_defaults(handler=serve_api, no_push=False)


def model_ids(name: str) -> list[str]:
    """The ids a request may name: the served id (a local model by its folder or file name), then `name` itself."""
    served = responses.served_model_id(name, is_local=Path(name).expanduser().exists())
    return list(dict.fromkeys([served, name]))


def serve_api(args: argparse.Namespace) -> int:
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    allowed_hosts = check_listen(args.host, api_key)  # before anything slow: a refused address fails at once
    sock = bind_tcp(args.host, args.port)
    try:
        model = open_model_for(args)
    except BaseException:
        sock.close()
        raise
    try:
        if isinstance(model, NodeClient):  # this PC's node of the swarm answers; forward to it
            engine = NodeEngine(model.socket_path, [model.model_id])
        else:
            engine = CausalLMEngine(model, model_ids(getattr(model, "model_name", None) or args.model))
        server = ApiServer(create_app(engine, api_key=api_key, allowed_hosts=allowed_hosts), sock)
        server.start()
        print(f"api {server.url}", flush=True)
        print(f"model {engine.model_ids()[0]}", flush=True)
        print("ready", flush=True)
        _wait_for_stop()
        server.stop()
    finally:
        model.shutdown()
    print("stopped", flush=True)
    return 0


def _wait_for_stop() -> None:
    """Until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
