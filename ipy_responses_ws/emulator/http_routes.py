"""HTTP routes: ``POST /v1/responses`` (SSE when ``stream: true``, JSON otherwise, §3), ``GET
/v1/responses/{id}`` and ``GET /v1/models`` (``/v1/models/{id}``), all behind the same Bearer auth."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from ..sse import encode_sse
from .builder import Turn
from .connection_log import ConnectionLog
from .service import Gone, Service
from .wire import RequestError, api_headers, dumps, fault_error

__all__ = ["MODELS", "HttpRoutes"]

#: Request fields that exist only in WebSocket mode (§1.3, §1.4): HTTP answers 400 for them.
_WS_ONLY_FIELDS = ("generate", "stream_id")

#: ``GET /v1/models``: ids and creation times in the shape of the real list (``owned_by`` as OpenAI has it).
MODELS = (
    ("gpt-5", 1754425777, "system"),
    ("gpt-5-mini", 1754425928, "system"),
    ("gpt-5-nano", 1754426384, "system"),
    ("gpt-4.1", 1744316542, "system"),
    ("gpt-4.1-mini", 1744318173, "system"),
    ("gpt-4o-mini", 1721172741, "system"),
    ("o4-mini", 1744225351, "system"),
)


def _model(model_id: str, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


class _SseSink:
    transport = "sse"

    def __init__(self, request: web.Request, resp: web.StreamResponse, entry: ConnectionLog) -> None:
        self.request, self.resp, self.entry, self.seq = request, resp, entry, 0
        self.aborted = False

    async def send(self, event: dict[str, Any]) -> None:
        event = dict(event, sequence_number=self.seq)
        self.seq += 1
        try:
            await self.resp.write(encode_sse(event["type"], event))  # one write per event
        except ConnectionError as exc:
            raise Gone from exc

    async def drop(self) -> None:
        self.aborted = True
        self.entry.server_close_code = 1006
        if self.request.transport is not None:
            self.request.transport.abort()

    async def close(self, code: int) -> None:
        """SSE has no close codes: end the body early, without a terminal event."""

    async def malformed(self, variant: str) -> None:
        if variant == "json":
            await self.resp.write(b'event: response.output_text.delta\ndata: {"type": "response.output\n\n')
        else:
            await self.resp.write(b"event: response.output_text.delta\ndata: \xff\xfe\n\n")


class _CollectSink:
    """For non-streaming POSTs: collect the events and answer with the final Response."""

    transport = "sse"

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.events: list[dict[str, Any]] = []
        self.malformed_body: bytes | None = None

    async def send(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def drop(self) -> None:
        if self.request.transport is not None:
            self.request.transport.abort()

    async def close(self, code: int) -> None:
        pass

    async def malformed(self, variant: str) -> None:
        self.malformed_body = b'{"id": "resp_' if variant == "json" else b"\xff\xfe"


class HttpRoutes:
    """The HTTP handlers of one :class:`Service`."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def add_to(self, app: web.Application, prefix: str) -> None:
        app.router.add_post(prefix + "/responses", self.post)
        app.router.add_get(prefix + "/responses/{id}", self.retrieve)
        app.router.add_get(prefix + "/models", self.models)
        app.router.add_get(prefix + "/models/{model}", self.model)

    async def post(self, request: web.Request) -> web.StreamResponse:
        svc = self.svc
        started = time.monotonic()
        entry = svc.new_log(request, "http")
        try:
            raw = await request.read()
            try:
                req = json.loads(raw)
            except ValueError:
                entry.frames.append(raw.decode("utf-8", "replace"))
                raise RequestError(
                    400, "We could not parse the JSON body of your request.", code=None
                ) from None
            entry.frames.append(req)
            if not isinstance(req, dict):
                raise RequestError(400, "The request body must be a JSON object.", code=None)
            auth = svc.auth_error(request)
            if auth is not None:
                raise auth
            for name in _WS_ONLY_FIELDS:
                if name in req:
                    # §1.4/§1.5: WS-only fields leak into HTTP as "Unknown parameter" (wording unverified).
                    raise RequestError(
                        400, f"Unknown parameter: '{name}'.", code="unknown_parameter", param=name
                    )
            prep = svc.prepare(req)
            fault = prep.fault or svc.faults.take("sse", "request")
            if fault is not None and fault.kind == "unauthorized":
                raise RequestError(
                    401, "Incorrect API key provided: sk-***. (emulator fault)", code="invalid_api_key"
                )
            parent, _lane, _cached = svc.resolve_parent(req, None)
            if fault is not None and fault.kind == "error" and fault.after == 0:
                raise fault_error(fault, req.get("model") or "gpt-5-mini")
            turn = svc.build(req, prep, parent, 0, "sse", fault, entry)
        except RequestError as exc:
            entry.status = exc.status
            return svc.http_error(exc, started)

        def remember(t: Turn) -> None:
            svc.remember(t, None, None)

        registered = prep.fault is None
        headers = api_headers(started)
        if req.get("stream"):
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_type = "text/event-stream"
            resp.charset = "utf-8"
            resp.headers["Cache-Control"] = "no-cache"
            await resp.prepare(request)
            entry.status = 200
            sink = _SseSink(request, resp, entry)
            try:
                await svc.stream(sink, turn, fault, remember, entry, registered=registered)
                if not sink.aborted:
                    await resp.write_eof()  # §3: close after the terminal event, no [DONE]
            except (ConnectionError, Gone):
                pass
            return resp
        collect = _CollectSink(request)
        outcome = await svc.stream(collect, turn, fault, remember, entry, registered=registered)
        if outcome == "dropped":
            return web.Response(status=500)  # never reaches the peer: the transport is aborted
        if collect.malformed_body is not None:
            entry.status = 200
            return web.Response(body=collect.malformed_body, content_type="application/json", headers=headers)
        terminal = next(
            (e for e in reversed(collect.events) if e["type"].startswith("response.") and "response" in e),
            None,
        )
        if terminal is None:
            entry.status = 500
            return svc.http_error(
                RequestError(500, "The stream was cut.", code="server_error", type_="server_error"), started
            )
        entry.status = 200
        return web.json_response(terminal["response"], headers=headers, dumps=dumps)

    async def retrieve(self, request: web.Request) -> web.Response:
        svc = self.svc
        started = time.monotonic()
        entry = svc.new_log(request, "http")
        auth = svc.auth_error(request)
        record = svc.store.get(request.match_info["id"])
        if auth is None and record is None:
            auth = RequestError(
                404,
                f"Response with id '{request.match_info['id']}' not found.",
                code=None,
                param="response_id",
            )
        if auth is not None:
            entry.status = auth.status
            return svc.http_error(auth, started)
        entry.status = 200
        return web.json_response(record.response, headers=api_headers(started), dumps=dumps)

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the OpenAI list shape, ``{"object": "list", "data": [model, ...]}``."""
        started = time.monotonic()
        entry = self.svc.new_log(request, "http")
        auth = self.svc.auth_error(request)
        if auth is not None:
            entry.status = auth.status
            return self.svc.http_error(auth, started)
        entry.status = 200
        data = [_model(*m) for m in MODELS]
        return web.json_response({"object": "list", "data": data}, headers=api_headers(started))

    async def model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{id}``: one model, or the real 404 ``model_not_found``."""
        started = time.monotonic()
        entry = self.svc.new_log(request, "http")
        name = request.match_info["model"]
        error = self.svc.auth_error(request)
        found = next((m for m in MODELS if m[0] == name), None)
        if error is None and found is None:
            error = RequestError(
                404, f"The model '{name}' does not exist", code="model_not_found", param="model"
            )
        if error is not None:
            entry.status = error.status
            return self.svc.http_error(error, started)
        entry.status = 200
        return web.json_response(_model(*found), headers=api_headers(started))
