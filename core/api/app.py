"""The OpenAI-compatible ASGI app (Starlette) over an Engine: any CausalLM through `CausalLMEngine`, or this PC's
node through core/api/gateway.py.

    GET  /v1/models                 the model this server runs
    GET  /v1/models/{id}
    POST /v1/chat/completions       chat messages through the model's chat template; streamed (SSE) or whole
    POST /v1/completions            a text prompt or token ids

Requests are checked by core/api/schema.py, answers shaped by core/api/responses.py, and errors come in OpenAI's
error object with the right status. A streamed reply starts (status 200) only once its first piece is there, so a
swarm that cannot serve is a 503, not a broken stream. A client that disconnects cancels its generation, which ends
the sessions on the servers. Starlette is imported when the app is built, so importing this module stays quick.
"""

from __future__ import annotations

import logging
import time

from potluck.core import typed_json
from potluck.core.api import responses, schema
from potluck.core.api.engine import Engine, Outcome, error_for
from potluck.core.api.running import MAX_RUNNING, MAX_WAITING, ClientGone, Run, Runs
from potluck.core.api.schema import ApiError, CompletionRequest, Kind

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"


def create_app(engine: Engine, *, api_key: str | None = None, allowed_hosts: frozenset[str] | None = None,
               details: bool = False, max_running: int = MAX_RUNNING, max_waiting: int = MAX_WAITING) -> Gate:
    """The ASGI app. `api_key`: every request must carry `Authorization: Bearer KEY`. `allowed_hosts`: the Host
    names requests may address (loopback names for a server on loopback). `details`: add the `potluck` extension
    (route, token ids, timings) to replies, for this PC's own clients."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    api = ApiRoutes(Runs(engine, max_running=max_running, max_waiting=max_waiting), details)
    routes = [Route("/v1/models", api.models, methods=["GET"]),
              Route("/v1/models/{model_id:path}", api.model, methods=["GET"]),
              Route("/v1/chat/completions", api.chat, methods=["POST"]),
              Route("/v1/completions", api.completions, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    return Gate(app, api, api_key, allowed_hosts)


class Gate:
    """The ASGI entry: refuses requests without the API key or for another host (in OpenAI's error shape), and
    passes the rest to the Starlette app. `routes` gives the server's run statistics and `cancel_all`."""

    def __init__(self, app, routes: ApiRoutes, api_key: str | None, allowed_hosts: frozenset[str] | None):
        self.app, self.routes, self._api_key, self._allowed_hosts = app, routes, api_key, allowed_hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            problem = schema.access_problem(headers.get("authorization"), headers.get("host"), self._api_key,
                                            self._allowed_hosts)
            if problem is not None:
                await _error_response(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error_response(error: ApiError, headers: dict | None = None):
    from starlette.responses import JSONResponse

    if error.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def _http_error(request, exc):
    """Starlette's own 404 (no such path) and 405 (wrong method) in OpenAI's shape."""
    words = {404: f"no such endpoint: {request.method} {request.url.path}",
             405: f"{request.method} is not allowed on {request.url.path}"}
    return _error_response(ApiError(exc.status_code, words.get(exc.status_code, str(exc.detail))),
                           getattr(exc, "headers", None))


async def read_json(request) -> dict:
    """The request's JSON object; ApiError for another content type, a body too large, or text that is no JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON_TYPE:
        raise ApiError(415, f"send the body as JSON with 'Content-Type: {JSON_TYPE}'")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > schema.MAX_BODY_BYTES:
        raise ApiError(413, f"the body is larger than {schema.MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > schema.MAX_BODY_BYTES:
            raise ApiError(413, f"the body is larger than {schema.MAX_BODY_BYTES} bytes")
    try:
        return typed_json.parse_object(bytes(body), max_chars=schema.MAX_BODY_BYTES)
    except typed_json.TypedJsonError as exc:
        raise schema.bad(f"the body is not a usable JSON object: {exc}") from None


class ApiRoutes:
    def __init__(self, runs: Runs, details: bool):
        self.runs, self.details = runs, details
        self.created = int(time.time())

    @property
    def stats(self):
        return self.runs.stats

    def cancel_all(self) -> None:
        self.runs.cancel_all()

    # ---- the endpoints ------------------------------------------------------------------------------------------
    async def models(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse(responses.models_body(self.runs.engine.model_ids()[:1], self.created))

    async def model(self, request):
        from starlette.responses import JSONResponse

        try:
            name = self._served(request.path_params["model_id"])
        except ApiError as exc:
            return _error_response(exc)
        return JSONResponse(responses.model_body(name, self.created))

    async def chat(self, request):
        return await self._complete(request, schema.parse_chat)

    async def completions(self, request):
        return await self._complete(request, schema.parse_completion)

    # ---- one completion -----------------------------------------------------------------------------------------
    def _served(self, name: str) -> str:
        """The id of the served model that `name` means; 404 for another model, 503 when none is set yet."""
        ids = self.runs.engine.model_ids()
        if not ids:
            raise ApiError(503, "no model is set up yet: choose one in Potluck first", code="no_model")
        if name not in ids:
            raise ApiError(404, f"The model `{name}` does not exist: this server runs `{ids[0]}` (see GET /v1/models)",
                           param="model", code="model_not_found")
        return ids[0]

    async def _complete(self, request, parse):
        from starlette.responses import JSONResponse, Response, StreamingResponse

        try:
            checked = parse(await read_json(request))
            name = self._served(checked.model)
            run = self.runs.start(checked)
        except ApiError as exc:
            return _error_response(exc)
        meta = (checked.kind, responses.new_id(checked.kind), int(time.time()), name)
        streaming = False  # once a StreamingResponse owns the run, it cancels it when the client leaves
        try:
            await run.wait_started(request.is_disconnected)
            if checked.stream and not run.task.done():
                streaming = True
                return StreamingResponse(self._events(checked, run, meta), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            outcome = await run.outcome(request.is_disconnected)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it
        except Exception as exc:
            return self._failed(exc)
        finally:
            if not streaming and not run.task.done():
                run.cancel()  # this handler was cancelled (the server stops)
        if checked.stream:  # the reply ended before its first piece: stream it whole
            return StreamingResponse(self._events(checked, run, meta), media_type="text/event-stream")
        kind, reply_id, created, model = meta
        usage = responses.Usage(outcome.prompt_tokens, outcome.completion_tokens)
        return JSONResponse(responses.completion_body(kind, reply_id, created, model, outcome.text,
                                                      responses.finish_reason(outcome.stop_reason.value), usage,
                                                      self._details(outcome)))

    def _failed(self, exc: BaseException):
        error = error_for(exc)
        if error.status >= 500:
            log.warning("a request failed: %s", error.message, exc_info=error.status == 500)
        return _error_response(error)

    def _details(self, outcome: Outcome) -> dict | None:
        return outcome.details() if self.details else None

    async def _events(self, checked: CompletionRequest, run: Run, meta):
        """The server-sent events of a streamed reply. Leaving early (the client went away) cancels the run."""
        kind, reply_id, created, model = meta
        holdback = responses.StopHoldback(checked.stop)
        try:
            if kind is Kind.CHAT:
                yield responses.sse(responses.chunk_body(kind, reply_id, created, model, role=True))
            async for piece in run.pieces():
                text = holdback.feed(piece)
                if text:
                    yield responses.sse(responses.chunk_body(kind, reply_id, created, model, text=text))
            try:
                outcome = run.task.result()
            except Exception as exc:
                yield responses.sse(error_for(exc).body())
                yield responses.SSE_DONE
                return
            rest = holdback.finish(outcome.text)
            if rest:
                yield responses.sse(responses.chunk_body(kind, reply_id, created, model, text=rest))
            yield responses.sse(responses.chunk_body(kind, reply_id, created, model,
                                                     finish=responses.finish_reason(outcome.stop_reason.value),
                                                     details=self._details(outcome)))
            if checked.include_usage:
                usage = responses.Usage(outcome.prompt_tokens, outcome.completion_tokens)
                yield responses.sse(responses.usage_chunk(kind, reply_id, created, model, usage))
            yield responses.SSE_DONE
        finally:
            if not run.task.done():
                run.cancel()
