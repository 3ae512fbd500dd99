"""One event parser for both transports: typed events, errors in every shape, unknown types passed through."""

from __future__ import annotations

import json

import pytest

from ipy_responses_ws.errors import (
    APIError,
    AuthenticationError,
    ProtocolError,
    RateLimitError,
    ResponseFailedError,
)
from ipy_responses_ws.events import Notice, error_from_event, error_from_http, parse_event


def test_parse_text_bytes_and_dict_alike():
    payload = {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        "delta": "Hel",
        "stream_id": "main",
    }
    for raw in (json.dumps(payload), json.dumps(payload).encode(), payload):
        ev = parse_event(raw)
        assert ev.type == "response.output_text.delta"
        assert (ev.delta, ev.sequence_number, ev.stream_id) == ("Hel", 4, "main")
        assert not ev.is_terminal and not ev.is_error
        assert ev.response is None


def test_terminal_and_error_flags():
    for t in ("response.completed", "response.incomplete", "response.failed"):
        ev = parse_event({"type": t, "response": {"id": "resp_1", "status": t.split(".")[1]}})
        assert ev.is_terminal and ev.response["id"] == "resp_1"
    assert parse_event('{"type":"error","error":{}}').is_error
    # the obsolete v1 terminal is not trusted as a terminal
    assert not parse_event('{"type":"response.done"}').is_terminal


def test_unknown_types_pass_through():
    ev = parse_event('{"type":"codex.rate_limits","foo":[1,2]}')
    assert ev.type == "codex.rate_limits" and ev.data["foo"] == [1, 2]


@pytest.mark.parametrize(
    "bad", ['{"type":', "[1,2]", '"str"', '{"no_type":1}', '{"type":5}', b"\xff\xfe", ""]
)
def test_malformed_is_protocol_error(bad):
    with pytest.raises(ProtocolError) as info:
        parse_event(bad)
    assert "server sent" in str(info.value)


def test_wrapped_ws_error_with_status_and_headers():
    ev = parse_event(
        {
            "type": "error",
            "status": 429,
            "error": {
                "type": "requests",
                "code": "rate_limit_exceeded",
                "message": "Rate limit reached",
                "headers": {"retry-after-ms": "250"},
            },
        }
    )
    err = error_from_event(ev, request_id="req_9")
    assert isinstance(err, RateLimitError)
    assert (err.status, err.code, err.retry_after, err.request_id) == (
        429,
        "rate_limit_exceeded",
        0.25,
        "req_9",
    )


def test_nested_sse_error_and_flat_error():
    nested = error_from_event(
        parse_event(
            {
                "type": "error",
                "sequence_number": 2,
                "error": {
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                    "message": "You exceeded your quota",
                    "param": None,
                },
            }
        )
    )
    assert nested.code == "insufficient_quota" and "exceeded" in nested.message
    flat = error_from_event(
        parse_event(
            {
                "type": "error",
                "code": "previous_response_not_found",
                "message": "Previous response with id 'resp_x' not found.",
                "param": "previous_response_id",
            }
        )
    )
    assert type(flat) is APIError
    assert (flat.code, flat.param) == ("previous_response_not_found", "previous_response_id")


def test_response_failed_event():
    ev = parse_event(
        {
            "type": "response.failed",
            "response": {
                "id": "resp_7",
                "status": "failed",
                "error": {"code": "server_error", "message": "The server had an error"},
            },
        }
    )
    err = error_from_event(ev)
    assert isinstance(err, ResponseFailedError)
    assert (err.response_id, err.code) == ("resp_7", "server_error")


def test_http_error_body():
    body = json.dumps(
        {
            "error": {
                "message": "Incorrect API key provided: sk-t***",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
    ).encode()
    err = error_from_http(401, body, {"X-Request-Id": "req_5", "content-type": "application/json"})
    assert isinstance(err, AuthenticationError)
    assert err.request_id == "req_5" and "OPENAI_API_KEY" in str(err)
    text = error_from_http(502, b"<html>Bad gateway</html>", {})
    assert text.status == 502 and "Bad gateway" in text.message


def test_notice_looks_like_an_event():
    n = Notice("fallback", {"reason": "HTTP 426"})
    assert n.type == "notice.fallback" and not n.is_terminal and n.data["reason"] == "HTTP 426"


def test_fast_path_matches_json_loads_on_edges():
    assert parse_event(' \n{"type":"x","n":1} \r\n').data == {"type": "x", "n": 1}
    assert parse_event(bytearray(b'{"type":"\\u00e9","d":"\xc3\xa9"}')).data == {"type": "é", "d": "é"}
    for bad in ('{"type":"x"} junk', '{"type":"x"}{"type":"y"}', b'{"type":"\xff"}'):
        with pytest.raises(ProtocolError):
            parse_event(bad)
