"""The error hierarchy: messages say what happened and what to do, and never show the key."""

from __future__ import annotations

import pickle

import pytest

from ipy_responses_ws import errors as E
from ipy_responses_ws.errors import api_error_from_status, redact, register_secret

KEY = "sk-test-FAKE-errors-0123456789abcdef"


def test_hierarchy_matches_contract():
    assert issubclass(E.MissingAPIKeyError, E.ConfigError)
    assert issubclass(E.InsecureTransportError, E.ConfigError)
    for cls in (
        E.ConnectError,
        E.HandshakeError,
        E.ConnectionClosedError,
        E.StreamTimeoutError,
        E.ProtocolError,
    ):
        assert issubclass(cls, E.TransportError)
    for cls in (E.AuthenticationError, E.RateLimitError, E.ResponseFailedError):
        assert issubclass(cls, E.APIError)
    for cls in (E.ConfigError, E.TransportError, E.APIError, E.PoolClosedError):
        assert issubclass(cls, E.ResponsesError)


def test_redact_exact_key_and_bearer_pattern():
    text = f"bad key {KEY}; header was Authorization: Bearer sk-other-SECRET-999 and bearer\tabc.def"
    out = redact(text, [KEY])
    assert KEY not in out
    assert "sk-other-SECRET-999" not in out
    assert "abc.def" not in out
    assert out.startswith("bad key [REDACTED]")


def test_registered_secret_redacted_in_every_error_field():
    register_secret(KEY)
    err = api_error_from_status(
        401,
        message=f"Incorrect API key provided: {KEY}.",
        code="invalid_api_key",
        headers={"x": f"Bearer {KEY}"},
    )
    assert isinstance(err, E.AuthenticationError)
    for text in (str(err), repr(err), err.message, str(err.args), str(err.headers)):
        assert KEY not in text
    assert "OPENAI_API_KEY" in str(err)
    closed = E.ConnectionClosedError(code=1011, reason=f"echo {KEY}")
    assert KEY not in str(closed) and KEY not in closed.reason
    hs = E.HandshakeError(status=500, body=f"oops {KEY}", url="ws://127.0.0.1:1/v1/responses")
    assert KEY not in hs.body


@pytest.mark.parametrize(
    "name",
    ["key", "api-key", "api_key", "apikey", "token", "access_token", "sig", "signature", "code", "x-api-key"],
)
def test_a_gateway_key_in_a_url_query_is_redacted_in_every_error(name):
    secret = f"gw-{name}-SECRET-0123456789"
    url = f"wss://gw.example/v1/responses?api-version=2025&{name}={secret}&deployment=d"
    errors = [
        E.ConnectError(f"Could not connect to {url}: ClientConnectorError: refused.", url=url),
        E.HandshakeError(status=503, url=url, body=f"upstream said {url}"),
        E.ConnectError(url=url),
        E.HandshakeError(status=404, url=url),
        E.ProtocolError(f"Expected an event stream from {url}, got HTTP 200 with text/html content type."),
        E.InsecureTransportError(url=url),
    ]
    for err in errors:
        for text in (
            str(err),
            repr(err),
            str(err.args),
            repr(vars(err)),
            repr(pickle.loads(pickle.dumps(err))),
        ):
            assert secret not in text, (type(err).__name__, text)
        assert "api-version=2025" in str(err) or not getattr(err, "url", None) or "gw.example" in str(err)
    assert errors[0].url == f"wss://gw.example/v1/responses?api-version=2025&{name}=***&deployment=d"
    assert "Could not connect to wss://gw.example/v1/responses?" in str(errors[0])


def test_redact_url_keeps_what_is_not_secret():
    from ipy_responses_ws.redact import redact_url

    assert redact_url("https://h/v1?api-version=2&model=x") == "https://h/v1?api-version=2&model=x"
    assert redact_url("https://user:p4ssw0rd-long@h/v1") == "https://user:***@h/v1"
    assert redact_url(None) is None


def test_registered_header_values_are_redacted():
    secret = "azure-header-SECRET-42424242"
    register_secret(secret)
    err = E.APIError(f"gateway echoed api-key: {secret}", status=400)
    assert secret not in str(err) and "[REDACTED]" in str(err)


def test_messages_say_what_and_what_to_do():
    t = E.StreamTimeoutError(phase="first_event", seconds=300)
    assert "300 s" in str(t) and "first event" in str(t) and "first_event_timeout" in str(t)
    idle = E.StreamTimeoutError(phase="idle", seconds=2.5)
    assert "2.5 s" in str(idle) and "idle_timeout" in str(idle)
    missing = E.MissingAPIKeyError()
    assert "OPENAI_API_KEY" in str(missing) and "emulator" in str(missing)
    closed = E.ConnectionClosedError(code=1006, received_any=True)
    assert "1006" in str(closed) and "mid-response" in str(closed)


def test_status_mapping_and_retry_after():
    assert isinstance(api_error_from_status(403), E.AuthenticationError)
    rl = api_error_from_status(
        429, message="slow down", headers={"Retry-After-Ms": "1500", "retry-after": "9"}
    )
    assert isinstance(rl, E.RateLimitError) and rl.retry_after == 1.5
    assert "1.5 s" in str(rl)
    rl2 = api_error_from_status(429, headers={"retry-after": "20"})
    assert rl2.retry_after == 20.0
    plain = api_error_from_status(
        400,
        message="nope",
        code="previous_response_not_found",
        param="previous_response_id",
        request_id="req_1",
    )
    assert type(plain) is E.APIError
    s = str(plain)
    assert "HTTP 400" in s and "previous_response_not_found" in s and "req_1" in s and "nope" in s


def test_errors_pickle_with_fields():
    err = E.ConnectionClosedError(code=1011, reason="boom", received_any=True)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is E.ConnectionClosedError
    assert (back.code, back.reason, back.received_any) == (1011, "boom", True)
    assert str(back) == str(err)


def test_raise_and_catch_by_base():
    with pytest.raises(E.ResponsesError) as info:
        raise E.ResponseFailedError("quota", code="insufficient_quota", response_id="resp_1")
    assert info.value.response_id == "resp_1"
    assert "insufficient_quota" in str(info.value)


def test_an_error_says_its_status_once() -> None:
    """LiteLLM sends the status as the code too; our own default message names it: neither is repeated."""
    gateway = api_error_from_status(400, message="Invalid model", code="400")
    assert str(gateway).count("400") == 1 and "(HTTP 400)" in str(gateway)
    plain = api_error_from_status(502)
    assert str(plain).count("502") == 1
    real = api_error_from_status(400, message="bad value", code="invalid_value", param="input")
    assert "(HTTP 400, invalid_value, param=input)" in str(real)
