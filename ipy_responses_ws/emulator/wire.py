"""Request-level errors and the headers every HTTP answer carries, as the real API sends them."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from .builder import error_body
from .faults import Fault

__all__ = ["OPENAI_VERSION", "RequestError", "api_headers", "dumps", "fault_error", "request_id"]

OPENAI_VERSION = "2020-10-01"


def dumps(event: Any) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def request_id() -> str:
    return "req_" + secrets.token_hex(16)


def ratelimit_headers() -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-remaining-tokens": "199000",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-reset-tokens": "300ms",
    }


def api_headers(started: float) -> dict[str, str]:
    """The headers of every HTTP answer; ``started`` is the ``time.monotonic()`` of the request."""
    headers = {
        "x-request-id": request_id(),
        "openai-version": OPENAI_VERSION,
        "openai-processing-ms": str(int((time.monotonic() - started) * 1000)),
        "openai-organization": "org-emulator",
    }
    headers.update(ratelimit_headers())
    return headers


class RequestError(Exception):
    """A request-level error before any event: a wrapped WS ``error`` or an HTTP error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None,
        type_: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.param = status, message, code, type_, param
        self.headers = headers or {}

    def ws_event(self) -> dict[str, Any]:
        """The wrapped request-level WS ``error`` event (§1.10): ``status`` on top, ``error.code`` nested."""
        err = error_body(self.message, type_=self.type, code=self.code, param=self.param)
        if self.headers:
            err["headers"] = dict(self.headers)
        return {"type": "error", "status": self.status, "error": err}

    def body(self) -> dict[str, Any]:
        return {"error": error_body(self.message, type_=self.type, code=self.code, param=self.param)}


def fault_error(fault: Fault, model_name: str) -> RequestError:
    """The error a ``kind="error"`` fault stands for, with realistic text and headers."""
    status = fault.status or 500
    headers = ratelimit_headers()
    if status == 429:
        code, type_ = "rate_limit_exceeded", "requests"
        message = (
            f"Rate limit reached for {model_name} in organization org-emulator on requests per min (RPM): "
            "Limit 500, Used 500, Requested 1. Please try again in 1s."
        )
        headers.update({"retry-after": "1", "retry-after-ms": "1000", "x-ratelimit-remaining-requests": "0"})
    elif status >= 500:
        code, type_ = "server_error", "server_error"
        message = "The server had an error while processing your request. Sorry about that!"
    else:
        code, type_ = "invalid_request_error", "invalid_request_error"
        message = "The emulator was asked to reject this request."
    if status == 429 or status >= 500:
        headers["x-should-retry"] = "true"
    headers.update(fault.headers)
    return RequestError(
        status,
        fault.message or message,
        code=str(fault.code) if fault.code is not None else code,
        type_=type_,
        headers=headers,
    )
