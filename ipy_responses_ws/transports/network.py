"""Reaching the server: which HTTP proxy the environment names for a URL, and a failed connect as the package's
error (a proxy that refused the tunnel, an unreachable proxy, an untrusted certificate). Used by both transports
and by the pool's connection identity; no other module reads proxy variables.
"""

from __future__ import annotations

import os
import urllib.request
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from ..errors import CertificateError, ConfigError, ConnectError, ProxyError, ResponsesError, masked_proxy_url
from ..redact import register_secret

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["EnvProxy", "env_proxy", "map_connect_error"]


class EnvProxy(NamedTuple):
    """The proxy the environment names for one URL."""

    url: str  # as set, credentials included: handed to aiohttp only, never shown (ProxyError masks it)
    variable: str  # the environment variable it came from, named in errors


_PROXY_VARIABLES = frozenset(
    {"https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"}
)


def env_proxy(url: str) -> EnvProxy | None:
    """The HTTP proxy to reach *url* through, from the environment as it is now, or None to go direct.

    Read on every connect, so a notebook that sets ``os.environ["HTTPS_PROXY"]`` is honoured by the next cell.
    ``wss://`` and ``https://`` use ``https_proxy`` / ``HTTPS_PROXY``; ``ws://`` and ``http://`` use ``http_proxy``
    / ``HTTP_PROXY``; ``all_proxy`` / ``ALL_PROXY`` is the fallback (as in curl, requests and httpx) when it is an
    HTTP proxy (a SOCKS one is left to the tools it was set for; elsewhere a SOCKS proxy is an error). Lower case
    wins, empty means unset. ``no_proxy`` / ``NO_PROXY`` bypasses with urllib's rules (``*``, a host, a domain
    suffix, ``host:port``). aiohttp's own ``trust_env`` is not used: it would look up ``WSS_PROXY`` for the
    WebSocket upgrade (which nobody sets) and read ``~/.netrc`` for the API host, whose credentials would clash
    with the ``Authorization`` header. A proxy without a scheme is ``http://`` (curl's rule).
    """
    env = os.environ
    if not any(name in env for name in _PROXY_VARIABLES):
        return None  # the common case, checked first: every turn asks
    parts = urlsplit(url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY")
    if no_proxy and parts.hostname:
        port = parts.port or (443 if scheme == "https" else 80)
        if urllib.request.proxy_bypass_environment(f"{parts.hostname}:{port}", {"no": no_proxy}):
            return None
    for variable in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = env.get(variable, "").strip()
        if value:
            break
    else:
        return None
    if "://" not in value:
        value = f"http://{value}"
    proxy = urlsplit(value)
    if proxy.scheme.lower() not in ("http", "https"):
        if variable.lower() == "all_proxy":
            return None  # often a SOCKS proxy set for other tools; aiohttp ignores ALL_PROXY altogether
        raise ConfigError(
            f"{variable} names a {proxy.scheme}:// proxy ({masked_proxy_url(value)}); only HTTP proxies are "
            "supported (http://HOST:PORT, tunnelling with CONNECT).",
            hint=f"Point {variable} at the proxy's http:// address, or unset it (or list the host in NO_PROXY).",
        )
    register_secret(proxy.password)  # so no later message can show it, whoever builds the message
    return EnvProxy(value, variable)


def map_connect_error(
    exc: BaseException, url: str, proxy: EnvProxy | None, settings: Settings, *, brief: bool = False
) -> ResponsesError:
    """A failed connect as the package's error: a proxy that refused the tunnel (its answer to CONNECT) or cannot be
    reached names its variable, an untrusted certificate names the CA trusted; else a ConnectError naming the
    exception (its type only when *brief*)."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        variable = proxy.variable if proxy else "HTTPS_PROXY"
        return ProxyError(status=exc.status, proxy=proxy.url if proxy else None, variable=variable, url=url)
    if isinstance(exc, aiohttp.ClientProxyConnectionError) and proxy is not None:
        return ConnectError(
            f"Could not connect to the proxy {masked_proxy_url(proxy.url)} (from {proxy.variable}): "
            f"{_describe(exc.os_error)}.",
            url=url,
            hint=(
                f"Check {proxy.variable}: is the proxy running and reachable from here? If {_host(url)} can be "
                f"reached without a proxy, unset {proxy.variable} or add the host to NO_PROXY."
            ),
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        ca = settings.resolved_ca_file()
        source = "ca_file" if settings.ca_file else "SSL_CERT_FILE"
        trusted = f"the CA file {ca} (from {source})" if ca else "the system's certificate store"
        why = getattr(exc.certificate_error, "verify_message", None) or _describe(exc.certificate_error)
        via = f" (reached through the proxy from {proxy.variable})" if proxy else ""
        return CertificateError(
            f"The TLS certificate of {_host(url)}{via} is not trusted ({why}); trusted: {trusted}.",
            url=url,
            hint=(
                "If a proxy or firewall inspects TLS (a corporate CA), set SSL_CERT_FILE (or the ca_file setting) "
                "to a PEM file holding that CA, then run the cell again; verification is never turned off."
            ),
        )
    return ConnectError(
        f"Could not connect to {url}: {type(exc).__name__ if brief else _describe(exc)}.", url=url
    )


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
