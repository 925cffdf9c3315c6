"""`potluck node`: the process the desktop app runs and talks to over stdin/stdout (core.protocol).

The first thing it does is say hello, before torch or hivemind are imported (the app waits for that line), then
`state stopped`; then it waits for commands. See core/node/control.py for the loop and docs/APP.md for the app.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import sys

from potluck.core import __version__, protocol
from potluck.core.node.control import NodeController
from potluck.core.node.stdio import LogFile, ProtocolWriter, setup_logging, take_stdio

log = logging.getLogger(__name__)


def run_node(verbose: bool = False) -> int:
    command_fd, protocol_out = take_stdio()
    writer = ProtocolWriter(protocol_out)
    writer.send(protocol.Hello(version=__version__, pid=os.getpid()))
    writer.send(protocol.State(state=protocol.NodeState.STOPPED, detail="Waiting for start"))
    setup_logging(verbose)
    if hasattr(faulthandler, "register"):  # `kill -USR1 <pid>` prints every thread's stack to the log (not on Windows)
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    log_file = LogFile()

    controller = NodeController(writer, command_fd, log_file)
    controller.state, controller.detail = protocol.NodeState.STOPPED, "Waiting for start"
    code = 1
    try:
        code = asyncio.run(controller.run())
    except Exception:
        log.exception("the node failed")
    finally:
        log_file.close()
        logging.shutdown()
        sys.stderr.flush()
    # Library threads (hivemind, the client's loop) must not keep a finished node alive: leave now.
    os._exit(code)
