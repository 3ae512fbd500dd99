"""HTTPS/WSS for the emulator: a throw-away CA and a certificate for the loopback names, made at start.

Uses ``trustme`` (``pip install 'ipy_responses_ws[tls]'``), imported only when TLS is asked for, so the
plain emulator still needs nothing beyond aiohttp and the standard library. The CA is written as PEM to a
fresh temporary directory (``ca_path``) that :meth:`TlsMaterial.cleanup` removes.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["TlsMaterial"]

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class TlsMaterial:
    """One CA, one server certificate for ``127.0.0.1``, ``localhost``, ``::1`` (and ``host``)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        try:
            import trustme
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "Emulator(tls=True) needs the trustme package: pip install 'ipy_responses_ws[tls]'"
            ) from exc
        names = list(_LOOPBACK_NAMES)
        if host and host not in names and not _is_any(host):
            names.append(host)
        self._ca: Any = trustme.CA(organization_name="ipy_responses_ws emulator")
        self._cert: Any = self._ca.issue_cert(*names)
        self._dir = Path(tempfile.mkdtemp(prefix="ipy-rws-emulator-tls-"))
        self.ca_path = str(self._dir / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that trusts this CA (and only it)."""
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    def cleanup(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def _is_any(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
