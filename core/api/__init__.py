"""The pooled model for every app: an OpenAI-compatible HTTP API over a CausalLM (the swarm's, the whole model in
this process, or this PC's node).

    schema.py     requests in: checks an OpenAI body into a plain CompletionRequest, or an ApiError (pure)
    responses.py  replies out: completion objects, stream chunks, server-sent events, stop-string holdback (pure)
    engine.py     Engine: runs a CompletionRequest; CausalLMEngine on any CausalLM, on the model's own loop
    running.py    one request's generation in the server: its pieces, cancel on disconnect, how many at once
    app.py        the ASGI app (Starlette): the endpoints, the API key and Host checks, errors in OpenAI's shape
    server.py     uvicorn on a thread, on TCP or on a private unix socket; only loopback without an API key
    gateway.py    this PC's node from a terminal: the node's unix socket, a client for it and an Engine over it
    member.py     `--swarm NAME` for terminal commands: through the running node, or joined as the member

Used by `potluck api` (core/cli/api.py), `potluck chat` and `generate --swarm`, and the node
(core/node/api_service.py). Nothing here imports torch, Starlette or uvicorn at import time.
"""
