"""The loopback-only control plane: ``/_emulator/faults`` (GET, POST, DELETE) and ``/_emulator/log``."""

from __future__ import annotations

from aiohttp import web

from .faults import Fault
from .service import Service
from .wire import dumps

__all__ = ["ControlRoutes"]

_LOOPBACK = ("127.0.0.1", "::1")


def _loopback_only(request: web.Request) -> None:
    if request.remote not in _LOOPBACK:
        raise web.HTTPForbidden(text="the emulator control plane is loopback-only")


class ControlRoutes:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def add_to(self, app: web.Application) -> None:
        app.router.add_route("*", "/_emulator/faults", self.faults)
        app.router.add_get("/_emulator/log", self.log)

    async def faults(self, request: web.Request) -> web.Response:
        _loopback_only(request)
        if request.method == "DELETE":
            self.svc.faults.clear()
        elif request.method == "POST":
            try:
                data = await request.json()
                for spec in data if isinstance(data, list) else [data]:
                    self.svc.faults.add(Fault.from_dict(spec))
            except (ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        elif request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "DELETE"])
        return web.json_response({"faults": [f.to_dict() for f in self.svc.faults.snapshot()]})

    async def log(self, request: web.Request) -> web.Response:
        _loopback_only(request)
        return web.json_response({"connections": [c.to_dict() for c in self.svc.connections]}, dumps=dumps)
