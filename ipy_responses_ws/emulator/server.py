"""The :class:`Emulator`: the shared :class:`~.service.Service` served over aiohttp on one port.

Routes (``prefix`` defaults to ``/v1``):

* ``GET  {prefix}/responses`` with ``Upgrade: websocket``: WebSocket mode (PROTOCOL.md §1), ``ws.py``.
* ``POST {prefix}/responses``: SSE when ``stream: true`` (§3), a JSON Response otherwise; ``GET
  {prefix}/responses/{id}``; ``GET {prefix}/models`` (``/{id}``): ``http_routes.py``.
* ``GET|POST|DELETE /_emulator/faults`` and ``GET /_emulator/log``: the loopback-only control plane,
  ``control.py``.

Only aiohttp and the standard library are imported (plus ``trustme`` when ``tls=True``), so the emulator
runs without Jupyter.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Iterator

from aiohttp import web

from .builder import ModelSettings
from .connection_log import ConnectionLog, mask_key
from .control import ControlRoutes
from .faults import Fault
from .http_routes import HttpRoutes
from .service import Service
from .tls import TlsMaterial
from .ws import WsRoute

__all__ = ["ConnectionLog", "Emulator", "mask_key"]


class Emulator(Service):
    """A faithful local stand-in for the OpenAI Responses API (WebSocket mode and HTTP SSE).

    ``tls=True`` serves https/wss with a certificate from a CA made at start (``ca_path``,
    ``client_ssl_context()``). ``ping_interval``/``ping_timeout`` turn on server keepalive pings on every
    WebSocket (uvicorn's defaults are 20 s / 20 s); a socket whose Pong is late is closed with 1011.

    >>> with Emulator(api_key="sk-test-FAKE-123456").run_in_thread() as emu:
    ...     emu.base_url  # doctest: +SKIP
    'http://127.0.0.1:40123/v1'
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        ttft: float = 0.0,
        token_rate: float = 0.0,
        answer_words: int | None = None,
        max_connection_age: float = 3600.0,
        strict_lanes: bool = False,
        max_frame_size: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "/v1",
        tls: bool = False,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
    ) -> None:
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError("ping_interval must be > 0 seconds (or None for no pings)")
        if ping_timeout is not None and ping_timeout <= 0:
            raise ValueError("ping_timeout must be > 0 seconds (or None to never close)")
        super().__init__(
            api_key,
            settings=ModelSettings(ttft=ttft, token_rate=token_rate, words=answer_words),
            max_connection_age=max_connection_age,
            strict_lanes=strict_lanes,
            max_frame_size=max_frame_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.tls = tls
        self._tls: TlsMaterial | None = None
        self._base_url: str | None = None
        self._ws = WsRoute(self)

    def __repr__(self) -> str:  # never shows the key
        return f"Emulator(base_url={self._base_url!r}, auth={'on' if self._api_key else 'off'})"

    # -- public API -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` (``https://`` with ``tls=True``) once serving (the SDK's ``base_url``)."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not serving; use run_in_thread() or serve()")
        return self._base_url

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/v1/responses`` (``wss://`` with ``tls=True``)."""
        scheme, rest = self.base_url.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest + "/responses"

    @property
    def ca_path(self) -> str | None:
        """The CA certificate (PEM) a client must trust while serving with ``tls=True``; None without TLS.

        E.g. ``httpx.Client(verify=ssl.create_default_context(cafile=emu.ca_path))`` or
        ``SSL_CERT_FILE=emu.ca_path``. The file is removed when the emulator stops.
        """
        if not self.tls:
            return None
        if self._tls is None:
            raise RuntimeError("the emulator is not serving; the CA is made at start")
        return self._tls.ca_path

    def client_ssl_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that trusts this emulator's CA (``tls=True``, while serving)."""
        if self._tls is None:
            raise RuntimeError("client_ssl_context() needs Emulator(tls=True) while serving")
        return self._tls.client_context()

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[Emulator]:
        """Serve on the running loop until the block exits."""
        self._tls = TlsMaterial(self.host) if self.tls else None  # the CA is made at start
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self.host, self.port, ssl_context=self._tls.server_context() if self._tls else None
            )
            await site.start()
            host, port = runner.addresses[0][:2]
            host = f"[{host}]" if ":" in host else host
            self._base_url = f"{'https' if self._tls else 'http'}://{host}:{port}{self.prefix}"
            yield self
        finally:
            await self._ws.shutdown()
            await runner.cleanup()
            self._base_url = None
            if self._tls is not None:
                self._tls.cleanup()
                self._tls = None

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[Emulator]:
        """Serve from a daemon thread with its own loop (for sync tests and notebooks)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        stop: list[asyncio.Event] = []

        async def main() -> None:
            stop.append(asyncio.Event())
            try:
                async with self.serve():
                    ready.set()
                    await stop[0].wait()
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(main())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        thread = threading.Thread(target=run, name="responses-emulator", daemon=True)
        thread.start()
        if not ready.wait(30):
            raise RuntimeError("the emulator did not start within 30 s")
        if failure:
            thread.join(5)
            raise failure[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop[0].set)
            thread.join(10)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get(self.prefix + "/responses", self._ws.handle)
        HttpRoutes(self).add_to(app, self.prefix)
        ControlRoutes(self).add_to(app)
        return app
