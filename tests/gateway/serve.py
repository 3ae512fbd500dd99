"""Run LiteLLM's proxy CLI with uvicorn's WebSocket keepalive taken from the environment.

Run it with the proxy venv's interpreter, with the arguments of ``litellm``::

    .venv-litellm/bin/python tests/gateway/serve.py --config config.yaml --host 127.0.0.1 --port 4000

LiteLLM's CLI calls ``uvicorn.run()`` without ``ws_ping_interval`` / ``ws_ping_timeout`` and has no option for
them, so uvicorn's defaults apply: a ping every 20 s, and the socket closed (1011) when its pong is 20 s late. The
tests need that behaviour at test speed. This wrapper adds ``IPY_RWS_GATEWAY_WS_PING_INTERVAL`` and
``IPY_RWS_GATEWAY_WS_PING_TIMEOUT`` (seconds) to that one call and changes nothing else. It imports only what
LiteLLM's venv has (never ``ipy_responses_ws``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import uvicorn
from litellm.proxy import proxy_cli

_ENV = {
    "ws_ping_interval": "IPY_RWS_GATEWAY_WS_PING_INTERVAL",
    "ws_ping_timeout": "IPY_RWS_GATEWAY_WS_PING_TIMEOUT",
}
_uvicorn_run = uvicorn.run


def _run(*args: Any, **kwargs: Any) -> Any:
    for option, name in _ENV.items():
        if os.environ.get(name):
            kwargs[option] = float(os.environ[name])
    shown = {k: kwargs[k] for k in ("host", "port", *_ENV) if k in kwargs}
    print(f"tests/gateway/serve.py: uvicorn.run({shown})", flush=True)
    return _uvicorn_run(*args, **kwargs)


uvicorn.run = _run  # proxy_cli imports uvicorn inside run_server() and calls uvicorn.run() there

if __name__ == "__main__":
    sys.exit(proxy_cli.run_server())
