"""A faithful local emulator of the OpenAI Responses API: WebSocket mode and HTTP SSE on one port.

Imports only aiohttp and the standard library (plus ``trustme`` for ``Emulator(tls=True)``), never Jupyter.
See docs/emulator.md (features, faults, TLS, keepalive pings, the module layout).

    from ipy_responses_ws.emulator import Emulator, Fault, reply_for

    with Emulator(api_key="sk-test-FAKE-0000").run_in_thread() as emu:
        ...  # point a client at emu.base_url
"""

from .builder import ModelSettings
from .faults import Fault
from .model import reply_for
from .server import ConnectionLog, Emulator

__all__ = ["ConnectionLog", "Emulator", "Fault", "ModelSettings", "reply_for"]
