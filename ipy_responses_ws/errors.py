"""One exception hierarchy for the whole package.

::

    ResponsesError                       root; .hint says what to do; str() = what happened + hint
    ├── ConfigError                      bad settings / arguments
    │   ├── MissingAPIKeyError           the key's variable (OPENAI_API_KEY, a profile's) unset
    │   ├── InsecureTransportError       key over ws:// or http:// to a non-loopback host
    │   └── (in their own modules) ToolSchemaError, PriceTableError, ConversationFormatError,
    │       AttachmentError, NoErrorToExplain: a function, price table, export file, attachment or
    │       missing error the user named
    ├── TransportError                   the connection itself failed
    │   ├── ConnectError                 TCP/TLS/DNS failure (.url)
    │   │   └── CertificateError         the server's certificate is not trusted (a CA to add: SSL_CERT_FILE)
    │   ├── HandshakeError               WS upgrade refused (.status, .body, .url): fallback-eligible
    │   │   └── ProxyError               the HTTP proxy refused the tunnel (.status, .proxy, .variable)
    │   ├── ConnectionClosedError        socket closed mid-turn (.code, .reason, .received_any)
    │   ├── StreamTimeoutError           .phase in {"connect", "first_event", "idle"}, .seconds
    │   └── ProtocolError                malformed frame/payload, binary frame, no terminal event
    ├── APIError                         the server said no (.status, .code, .message, .param, .request_id, .headers)
    │   ├── AuthenticationError          401/403: names OPENAI_API_KEY, never the key
    │   ├── RateLimitError               429 (.retry_after seconds or None)
    │   └── ResponseFailedError          response.failed terminal event (.response_id)
    ├── PoolClosedError                  the session/pool was closed
    └── BudgetExceededError              (pricing.py) the session's estimated cost reached Settings.budget

Secrets never reach exception text: every message and every free-text field is passed through
:func:`~ipy_responses_ws.redact.redact` at construction (the registered key, gateway keys in URL queries,
custom header values, any ``Bearer <token>``), and every ``.url`` field through
:func:`~ipy_responses_ws.redact.redact_url`. So an error built anywhere, by any transport, comes out clean:
servers and proxies sometimes echo request headers back in error bodies (PROTOCOL.md §3, B4), and a connect
error names the URL, whose query may hold a gateway key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .redact import MASK, REDACTED, redact, redact_url, register_secret
from .retry_after import parse_retry_after

__all__ = [
    "ResponsesError",
    "ConfigError",
    "MissingAPIKeyError",
    "InsecureTransportError",
    "TransportError",
    "ConnectError",
    "CertificateError",
    "HandshakeError",
    "ProxyError",
    "ConnectionClosedError",
    "StreamTimeoutError",
    "ProtocolError",
    "APIError",
    "AuthenticationError",
    "RateLimitError",
    "ResponseFailedError",
    "PoolClosedError",
    "REDACTED",
    "redact",
    "register_secret",
    "api_error_from_status",
]


def _clean(value: Any) -> Any:
    """Redact strings (and the string values of a mapping); leave other values alone."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    return value


class ResponsesError(Exception):
    """Root of every error raised by ipy_responses_ws.

    ``str(err)`` is computed from the fields: what happened, then what to do (``hint``). Every text
    field is key-redacted at construction, so the error can be logged or shown as-is.
    """

    default_hint: str = ""

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        self.message = redact(message or self._default_message())
        self.hint = redact(hint if hint is not None else self.default_hint)
        super().__init__(str(self))

    def _default_message(self) -> str:
        return self.__class__.__name__

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}".strip()
        return self.message

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({str(self)!r})"

    def __reduce__(self) -> Any:
        # Exceptions with keyword-only fields do not pickle by default; keep them picklable for
        # multiprocessing and IPython's traceback machinery.
        return (_rebuild, (self.__class__, self.__dict__.copy()))


def _rebuild(cls: type[ResponsesError], state: dict[str, Any]) -> ResponsesError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, str(err))
    return err


_E = TypeVar("_E", bound=BaseException)


def strip_tracebacks(err: _E) -> _E:
    """Drop the tracebacks of *err* and of every exception chained to it (``__cause__``/``__context__``).

    Errors cross from the I/O loop into ``TurnResult.error`` and into user cells, where traceback renderers
    that show frame locals (IPython ``%xmode Verbose``, rich, Sentry) would print whatever the loop-side
    frames held: request headers, the raw echoed body, hence the API key (DESIGN.md §6). The messages are
    already redacted at construction; the frames are the part that is not. Returns *err* for chaining.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        exc.__traceback__ = None
        todo += [exc.__cause__, exc.__context__]
        if isinstance(exc, BaseExceptionGroup):
            todo += list(exc.exceptions)
    return err


# --- configuration -----------------------------------------------------------------------------------


class ConfigError(ResponsesError):
    """A setting or argument has a bad value."""

    default_hint = "Check the value and try again."


class MissingAPIKeyError(ConfigError):
    """No API key was given and the key's environment variable (``OPENAI_API_KEY``, or the endpoint profile's
    ``key_env``) is not set. ``.variable`` names it, ``.profile`` names the profile (never a value)."""

    def __init__(
        self,
        message: str = "",
        *,
        variable: str = "OPENAI_API_KEY",
        profile: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.variable = variable
        self.profile = profile
        super().__init__(message, hint=hint)

    @property
    def default_hint(self) -> str:  # type: ignore[override]
        var = getattr(self, "variable", "OPENAI_API_KEY")
        hint = (
            f"Set {var} in the environment before starting Jupyter, or in the notebook with "
            f"`import os, getpass; os.environ['{var}'] = getpass.getpass('API key: ')` "
            "(not `%env`, which prints the key into the saved notebook)."
        )
        if var == "OPENAI_API_KEY" and not getattr(self, "profile", None):
            hint += (
                " To try the package offline, start the local emulator: `python -m ipy_responses_ws.emulator` "
                "and set OPENAI_BASE_URL to the URL it prints."
            )
        return hint

    def _default_message(self) -> str:
        if self.profile:
            return f"No API key for the {self.profile!r} endpoint profile: {self.variable} is not set."
        return f"No OpenAI API key: {self.variable} is not set and no api_key was given."


class InsecureTransportError(ConfigError):
    """The key would travel in clear text to a host that is not this machine."""

    default_hint = "Use an https:// base URL, or pass allow_insecure=True if you really mean to send the key unencrypted."

    def __init__(self, message: str = "", *, url: str | None = None, hint: str | None = None) -> None:
        self.url = redact_url(url)
        super().__init__(message, hint=hint)

    def _default_message(self) -> str:
        return f"Refusing to send the API key over an unencrypted connection to {self.url!s}."


# --- transport ---------------------------------------------------------------------------------------


class TransportError(ResponsesError):
    """The connection itself failed (nothing the server said)."""

    default_hint = "Check the network and the base URL (OPENAI_BASE_URL), then run the cell again."


class ConnectError(TransportError):
    """TCP, TLS or DNS failure while connecting to ``url``."""

    def __init__(self, message: str = "", *, url: str | None = None, hint: str | None = None) -> None:
        self.url = redact_url(url)
        super().__init__(message, hint=hint)

    def _default_message(self) -> str:
        return f"Could not connect to {self.url}."


class HandshakeError(TransportError):
    """The WebSocket upgrade was refused with an HTTP status (fallback-eligible)."""

    default_hint = "The server or a proxy does not accept WebSocket mode; the SSE transport may still work."

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        body: str | None = None,
        url: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.body = redact(body) if body else body
        self.url = redact_url(url)
        if hint is None and status == 404:
            hint = (
                "Check the base URL (OPENAI_BASE_URL or the base_url setting; it usually ends in /v1). If it is "
                "right, the server does not offer WebSocket mode: the SSE transport may still work."
            )
        super().__init__(message, hint=hint)

    def _default_message(self) -> str:
        return f"WebSocket handshake with {self.url} was refused (HTTP {self.status})."


def masked_proxy_url(url: str | None) -> str | None:
    """A proxy URL fit to show: in a proxy URL the user name is a credential too (``http://***@proxy:3128``)."""
    if not url or "@" not in url:
        return redact_url(url)
    head, _, tail = url.rpartition("@")
    return redact_url(f"{head.split('://')[0]}://{MASK}@{tail}" if "://" in head else f"{MASK}@{tail}")


class CertificateError(ConnectError):
    """The server's TLS certificate is not trusted: no retry or fallback changes that (the same host, the same CA)."""


class ProxyError(HandshakeError):
    """The HTTP proxy refused to open the tunnel: its answer to ``CONNECT`` (``.status``: 407, 403, 502 ...).

    ``.proxy`` is its URL with the credentials masked, ``.variable`` the environment variable that named it. A
    refused tunnel is a refused handshake one hop early, and the recovery policy treats it as one: WebSocket mode
    tries SSE once (through the same proxy), a 5xx is retried, a 407 or 403 is not. Never a key problem.
    """

    def __init__(self, *, status: int, proxy: str | None, variable: str, url: str | None = None) -> None:
        self.proxy = masked_proxy_url(proxy)
        self.variable = variable
        host = urlsplit(url or "").hostname or "the server"
        bypass = f"or, if {host} can be reached without the proxy, add it to NO_PROXY"
        creds = "USER:PASSWORD@ before the proxy's host, special characters percent-encoded"
        if status == 407 and proxy and "@" in proxy:
            hint = f"The proxy refused the user name and password in {variable}: correct them ({creds}), {bypass}."
        elif status == 407:
            hint = f"The proxy wants a user name and password: put them in {variable} ({creds}), {bypass}."
        elif status == 403:
            hint = f"The proxy does not let this machine reach {host}: ask its administrators, {bypass}."
        else:
            hint = f"Check {variable} (and NO_PROXY), then run the cell again."
        message = f"The proxy {self.proxy} (from {variable}) refused to open a connection to {host} (HTTP {status})."
        super().__init__(message, status=status, url=url, hint=hint)


# Close codes whose generic "check the network" hint would mislead (RFC 6455 §7.4.1).
_CLOSE_HINTS = {
    1009: "The message was too big for the server (close 1009): shorten the prompt, or start a new "
    "conversation with `%%respond --new` / `session.reset()` if the history has grown too long.",
    1008: "The server closed the connection for a policy violation (close 1008): check the request "
    "and the API key's permissions, then run the cell again.",
    1013: "The server is overloaded (close 1013, try again later): wait a moment, then run the cell again.",
}


class ConnectionClosedError(TransportError):
    """The socket closed before the response reached a terminal event."""

    def __init__(
        self,
        message: str = "",
        *,
        code: int | None = None,
        reason: str | None = None,
        received_any: bool = False,
        hint: str | None = None,
    ) -> None:
        self.code = code
        self.reason = redact(reason) if reason else reason
        self.received_any = received_any
        if hint is None:
            hint = _CLOSE_HINTS.get(code) if code is not None else None
        super().__init__(message, hint=hint)

    def _default_message(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        where = "mid-response" if self.received_any else "before any event arrived"
        return f"The connection closed {where} with code {self.code}{why}."


class StreamTimeoutError(TransportError):
    """Nothing arrived in time: while connecting, before the first event, or between events."""

    _PHASES = {
        "connect": "connecting",
        "first_event": "waiting for the first event",
        "idle": "waiting for the next event",
    }

    def __init__(
        self,
        message: str = "",
        *,
        phase: str = "idle",
        seconds: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.phase = phase
        self.seconds = seconds
        if hint is None:
            setting = {"connect": "connect_timeout", "first_event": "first_event_timeout"}.get(
                phase, "idle_timeout"
            )
            hint = f"Run the cell again; if the server is just slow, raise `{setting}` (%responses config)."
        super().__init__(message, hint=hint)

    def _default_message(self) -> str:
        return f"Timed out after {self.seconds:g} s {self._PHASES.get(self.phase, self.phase)}."


class ProtocolError(TransportError):
    """The server sent something that is not a valid Responses API event."""

    default_hint = (
        "The connection was discarded; run the cell again. If it repeats, the server is not compatible."
    )


# --- API ---------------------------------------------------------------------------------------------


class APIError(ResponsesError):
    """The server answered with an error (HTTP status or an ``error`` event)."""

    # The error is often shown alone (a cell's status line, `result.error`): the hint must stand on its own.
    default_hint = "Fix the request, or try again later if the server is having trouble."

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.param = param
        self.request_id = request_id
        self.headers = _clean(dict(headers)) if headers else {}
        super().__init__(message, hint=hint)

    def _default_message(self) -> str:
        return "The API returned an error."

    def __str__(self) -> str:
        bits = []
        # Each fact once: gateways put the status in the code too ("400") or the message ("HTTP 400").
        if self.status is not None and f"HTTP {self.status}" not in self.message:
            bits.append(f"HTTP {self.status}")
        if self.code and str(self.code) != str(self.status):
            bits.append(str(self.code))
        if self.param:
            bits.append(f"param={self.param}")
        if self.request_id:
            bits.append(f"request id {self.request_id}")
        head = f"{self.message} ({', '.join(bits)})" if bits else self.message
        return f"{head} {self.hint}".strip() if self.hint else head


class AuthenticationError(APIError):
    """401/403: the key is wrong, revoked or lacks access. The key itself is never shown."""

    default_hint = (
        "Check OPENAI_API_KEY (and OPENAI_ORG_ID / project if you set them): set the right key with "
        "`os.environ['OPENAI_API_KEY'] = getpass.getpass('API key: ')` and run the cell again."
    )

    def _default_message(self) -> str:
        return "The server rejected the API key."


class RateLimitError(APIError):
    """429: too many requests or tokens, or no quota left."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        if kw.get("hint") is None:
            wait = f"Wait {retry_after:g} s" if retry_after is not None else "Wait a little"
            kw["hint"] = f"{wait} and run the cell again; check your plan and billing if it persists."
        super().__init__(message, **kw)


class ResponseFailedError(APIError):
    """The response ended with ``response.failed``."""

    def __init__(self, message: str = "", *, response_id: str | None = None, **kw: Any) -> None:
        self.response_id = response_id
        super().__init__(message, **kw)

    def _default_message(self) -> str:
        return "The response failed."


class PoolClosedError(ResponsesError):
    """The session or its connection pool was closed."""

    default_hint = "Create a new ResponsesSession (or reload the extension) to continue."

    def _default_message(self) -> str:
        return "The session is closed."


def api_error_from_status(
    status: int | None,
    *,
    message: str | None = None,
    code: str | None = None,
    param: str | None = None,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> APIError:
    """Build the right :class:`APIError` subclass for an HTTP-style status (PROTOCOL.md §3 error table)."""
    msg = message or (f"The server answered HTTP {status}." if status else "The server returned an error.")
    kw: dict[str, Any] = {
        "status": status,
        "code": code,
        "param": param,
        "request_id": request_id,
        "headers": headers,
    }
    if status in (401, 403) or code == "invalid_api_key":
        return AuthenticationError(msg, **kw)
    if status == 429 or code in ("rate_limit_exceeded", "insufficient_quota"):
        return RateLimitError(msg, retry_after=parse_retry_after(headers), **kw)
    if status in (404, 405) and not code:
        # No OpenAI error code: the URL itself is wrong (a gateway's 404 page), not the request.
        return APIError(msg, hint=_NOT_FOUND_HINT, **kw)
    return APIError(msg, **kw)


_NOT_FOUND_HINT = (
    "The server has no Responses endpoint at this URL: check the base URL (OPENAI_BASE_URL or the base_url "
    "setting; it usually ends in /v1, e.g. https://api.openai.com/v1)."
)
