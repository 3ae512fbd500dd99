"""The per-response protocol core, without sockets: which events belong to a response, which end it, what is
stale, and which wait applies when (``ipy_responses_ws.stream``; PROTOCOL.md §1.2, §1.9, §1.10, §2.7, §7).

Every event is built as a dict and fed both ways a transport does: as a raw payload
(``feed_payload(json.dumps(ev).encode(), now)``, a WS text frame or an SSE ``data:`` line) and as a parsed event
(``feed(parse_event(ev), now)``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from ipy_responses_ws.errors import (
    APIError,
    AuthenticationError,
    ProtocolError,
    RateLimitError,
    StreamTimeoutError,
)
from ipy_responses_ws.events import parse_event
from ipy_responses_ws.stream import (
    CONNECTION_LIMIT_CODE,
    OUTPUT_DELTA_TYPES,
    TERMINAL_TYPES,
    Phase,
    ResponseStream,
    Step,
)

FIRST = 300.0  # first_event_timeout: covers a reasoning model's thinking
IDLE = 120.0  # idle_timeout: between events once output flows
T0 = 1000.0  # the caller's clock when the request went out

RID = "resp_" + "a" * 48
OTHER = "resp_" + "b" * 48

Event = dict[str, Any]
Feed = Callable[[ResponseStream, Event, float], Step]


# --- event builders ------------------------------------------------------------------------------------


def snapshot(rid: str = RID, status: str = "in_progress", **extra: Any) -> dict[str, Any]:
    return {"id": rid, "object": "response", "status": status, "model": "gpt-test", "output": [], **extra}


def created(rid: str = RID, seq: int = 0) -> Event:
    return {"type": "response.created", "sequence_number": seq, "response": snapshot(rid)}


def in_progress(rid: str = RID, seq: int = 1) -> Event:
    return {"type": "response.in_progress", "sequence_number": seq, "response": snapshot(rid)}


def item_added(item_type: str, seq: int = 2) -> Event:
    item: dict[str, Any] = {"id": f"{item_type[:2]}_1", "type": item_type, "status": "in_progress"}
    return {"type": "response.output_item.added", "sequence_number": seq, "output_index": 0, "item": item}


def item_done(item_type: str, seq: int = 3) -> Event:
    item: dict[str, Any] = {"id": f"{item_type[:2]}_1", "type": item_type, "status": "completed"}
    return {"type": "response.output_item.done", "sequence_number": seq, "output_index": 0, "item": item}


def delta(etype: str = "response.output_text.delta", text: str = "Hi", seq: int = 4) -> Event:
    return {"type": etype, "sequence_number": seq, "item_id": "msg_1", "output_index": 0, "delta": text}


def terminal(etype: str = "response.completed", rid: str = RID, seq: int = 9, **extra: Any) -> Event:
    status = {"response.completed": "completed", "response.incomplete": "incomplete"}.get(etype, "failed")
    return {"type": etype, "sequence_number": seq, "response": snapshot(rid, status, **extra)}


def legacy_done(status: Any, rid: str = RID, seq: int = 9) -> Event:
    resp = snapshot(rid, "x")
    if status is None:
        del resp["status"]
    else:
        resp["status"] = status
    return {"type": "response.done", "sequence_number": seq, "response": resp}


def error(
    code: str | None = "server_error",
    *,
    status: int | None = None,
    seq: int | None = None,
    message: str = "boom",
    **inner: Any,
) -> Event:
    """The wrapped WS shape (§1.10): ``status`` at the top, the details nested under ``error``."""
    ev: Event = {
        "type": "error",
        "error": {"type": "invalid_request_error", "code": code, "message": message},
    }
    ev["error"].update(inner)
    if status is not None:
        ev["status"] = status
    if seq is not None:
        ev["sequence_number"] = seq
    return ev


def text_response(rid: str = RID) -> list[Event]:
    """A plain text response in wire order (§2.2)."""
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    return [
        created(rid, 0),
        in_progress(rid, 1),
        {"type": "response.output_item.added", "sequence_number": 2, "output_index": 0, "item": msg},
        {"type": "response.content_part.added", "sequence_number": 3, "item_id": "msg_1", "part": part},
        delta(text="Hel", seq=4),
        delta(text="lo", seq=5),
        {"type": "response.output_text.done", "sequence_number": 6, "item_id": "msg_1", "text": "Hello"},
        {"type": "response.content_part.done", "sequence_number": 7, "item_id": "msg_1", "part": part},
        {"type": "response.output_item.done", "sequence_number": 8, "output_index": 0, "item": msg},
        terminal("response.completed", rid, 9),
    ]


# --- the two ways a transport feeds an event -----------------------------------------------------------


def _feed_payload(stream: ResponseStream, ev: Event, now: float) -> Step:
    return stream.feed_payload(json.dumps(ev).encode(), now)


def _feed_event(stream: ResponseStream, ev: Event, now: float) -> Step:
    return stream.feed(parse_event(json.dumps(ev)), now)


@pytest.fixture(params=[_feed_payload, _feed_event], ids=["feed_payload", "feed"])
def feed(request: pytest.FixtureRequest) -> Feed:
    return request.param


def new_stream(*, sent: bool = True, finished: Any = ()) -> ResponseStream:
    stream = ResponseStream(first_output_timeout=FIRST, idle_timeout=IDLE, finished=finished)
    if sent:
        stream.sent(T0)
    return stream


def feed_all(stream: ResponseStream, feed: Feed, events: list[Event], now: float = T0 + 1) -> list[Step]:
    return [feed(stream, ev, now + i) for i, ev in enumerate(events)]


# --- a normal response ---------------------------------------------------------------------------------


def test_normal_response_emits_every_event_and_finishes_on_the_terminal(feed: Feed) -> None:
    stream = new_stream()
    events = text_response()
    delivered = []
    steps = []
    for i, ev in enumerate(events):
        step = feed(stream, ev, T0 + 1 + i)
        steps.append(step)
        delivered.append(stream.event)
    assert steps == [Step.EMIT] * (len(events) - 1) + [Step.FINISH]
    # the event to deliver is the one just fed, unchanged
    assert [ev.data for ev in delivered] == events  # type: ignore[union-attr]
    assert [ev.type for ev in delivered] == [e["type"] for e in events]  # type: ignore[union-attr]
    assert stream.terminal is delivered[-1]
    assert stream.terminal.type == "response.completed"
    assert stream.response_id == RID
    assert stream.phase is Phase.DONE and stream.done
    assert stream.received and stream.started
    assert stream.dropped == 0
    assert stream.error is None and stream.error_event is None
    assert not stream.request_level_error
    assert math.isinf(stream.deadline())


@pytest.mark.parametrize("etype", sorted(TERMINAL_TYPES))
def test_each_terminal_type_finishes(feed: Feed, etype: str) -> None:
    stream = new_stream()
    assert feed_all(stream, feed, [created(), in_progress()]) == [Step.EMIT, Step.EMIT]
    assert feed(stream, terminal(etype), T0 + 5) is Step.FINISH
    assert stream.terminal is stream.event
    assert stream.terminal.type == etype
    assert stream.terminal.data["response"]["id"] == RID
    assert stream.done and stream.error is None


def test_terminal_types_are_the_three_of_the_protocol() -> None:
    assert sorted(TERMINAL_TYPES) == ["response.completed", "response.failed", "response.incomplete"]


def test_a_terminal_without_response_created_sets_the_response_id(feed: Feed) -> None:
    stream = new_stream()
    assert feed(stream, terminal("response.completed"), T0 + 1) is Step.FINISH
    assert stream.response_id == RID
    assert stream.received and not stream.started


@pytest.mark.parametrize("first", ["response.queued", "response.in_progress"])
def test_a_server_that_skips_response_created_gets_its_id_from_queued_or_in_progress(
    feed: Feed, first: str
) -> None:
    stream = new_stream()
    ev = {"type": first, "sequence_number": 0, "response": snapshot()}
    assert feed(stream, ev, T0 + 1) is Step.EMIT
    assert stream.started and stream.response_id == RID
    # and that id then rules out another response's events
    assert feed(stream, in_progress(OTHER), T0 + 2) is Step.DROP
    assert stream.dropped == 1


# --- the v1 terminal response.done (§1.2, §7.10) --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "mapped"),
    [
        ("completed", "response.completed"),
        ("incomplete", "response.incomplete"),
        ("failed", "response.failed"),
        ("cancelled", "response.failed"),
    ],
)
def test_legacy_response_done_is_mapped_by_status(feed: Feed, status: str, mapped: str) -> None:
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress()])
    assert feed(stream, legacy_done(status), T0 + 5) is Step.FINISH
    term = stream.terminal
    assert term is stream.event
    assert term.type == mapped
    assert term.data["type"] == mapped  # the payload agrees with the type
    assert term.data["response"]["status"] == status  # the snapshot is kept (a cancelled stays visible)
    assert term.data["response"]["id"] == RID
    assert stream.done


@pytest.mark.parametrize(
    "done",
    [
        legacy_done("in_progress"),
        legacy_done(None),  # no status at all
        legacy_done("weird"),
        {"type": "response.done", "sequence_number": 9},  # no response object
        {"type": "response.done", "sequence_number": 9, "response": "resp_x"},  # not an object
    ],
    ids=["in_progress", "no_status", "unknown_status", "no_response", "response_not_object"],
)
def test_legacy_response_done_with_an_unusable_status_is_delivered_and_the_stream_waits_on(
    feed: Feed, done: Event
) -> None:
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress(), delta()])
    assert feed(stream, done, T0 + 10) is Step.EMIT
    assert stream.event.type == "response.done"  # type: ignore[union-attr]
    assert stream.terminal is None and not stream.done
    assert stream.phase is Phase.IDLE
    assert stream.deadline() == T0 + 10 + IDLE  # it counted as an event of the response
    # a real terminal still ends it
    assert feed(stream, terminal(), T0 + 11) is Step.FINISH
    assert stream.terminal.type == "response.completed"


# --- stale events --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stray",
    [
        created(OTHER),
        in_progress(OTHER),
        terminal("response.completed", OTHER),
        terminal("response.failed", OTHER),
        legacy_done("completed", OTHER),
    ],
    ids=["created", "in_progress", "completed", "failed", "legacy_done"],
)
def test_an_event_of_another_response_is_dropped(feed: Feed, stray: Event) -> None:
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress(), delta()])
    before = stream.deadline()
    assert feed(stream, stray, T0 + 50) is Step.DROP
    assert stream.dropped == 1
    assert stream.response_id == RID
    assert stream.terminal is None and not stream.done
    assert stream.deadline() == before  # a stale frame does not count as activity
    assert feed(stream, terminal(), T0 + 51) is Step.FINISH
    assert stream.terminal.data["response"]["id"] == RID


@pytest.mark.parametrize(
    "stray",
    [
        terminal("response.completed", OTHER),
        legacy_done("completed", OTHER),
        created(OTHER),
        in_progress(OTHER),
    ],
    ids=["completed", "legacy_done", "created", "in_progress"],
)
def test_an_event_of_a_finished_response_is_dropped_before_this_one_starts(feed: Feed, stray: Event) -> None:
    # The previous response on this socket ended; a late frame of it arrives before the new response.created.
    stream = new_stream(finished={OTHER})
    assert feed(stream, stray, T0 + 1) is Step.DROP
    assert stream.dropped == 1
    assert stream.response_id is None and not stream.started and not stream.received
    assert stream.terminal is None and stream.phase is Phase.FIRST_OUTPUT
    steps = feed_all(stream, feed, text_response(), T0 + 2)
    assert steps[-1] is Step.FINISH and Step.DROP not in steps
    assert stream.response_id == RID


def test_finished_is_only_read(feed: Feed) -> None:
    finished = {OTHER}
    stream = new_stream(finished=finished)
    feed_all(stream, feed, text_response())
    assert finished == {OTHER}


@pytest.mark.parametrize(
    "stray",
    [
        legacy_done("completed"),  # a gateway that sends both terminals
        terminal("response.completed"),  # the same terminal twice
        error("server_error", seq=10),  # a late error
        error("server_error"),  # a late error without a sequence number
        error(CONNECTION_LIMIT_CODE, status=400),  # even the connection cap
        delta(seq=10),
        created(OTHER),  # the next response's start is not this stream's business
        {"type": "response.something_new", "sequence_number": 11},
    ],
    ids=[
        "legacy_done",
        "second_completed",
        "late_error",
        "late_error_no_seq",
        "connection_limit",
        "delta",
        "next_created",
        "unknown",
    ],
)
def test_anything_after_the_terminal_is_dropped(feed: Feed, stray: Event) -> None:
    stream = new_stream()
    feed_all(stream, feed, text_response())
    term = stream.terminal
    assert feed(stream, stray, T0 + 100) is Step.DROP
    assert feed(stream, stray, T0 + 101) is Step.DROP
    assert stream.dropped == 2
    assert stream.terminal is term and stream.event is term
    assert stream.error is None and stream.error_event is None
    assert stream.phase is Phase.DONE and math.isinf(stream.deadline())


@pytest.mark.parametrize("payload", [b"not json", b"", b"[]"], ids=["malformed", "empty", "not_object"])
def test_even_a_malformed_payload_after_the_terminal_is_only_dropped(payload: bytes) -> None:
    stream = new_stream()
    feed_all(stream, _feed_payload, text_response())
    assert stream.feed_payload(payload, T0 + 100) is Step.DROP
    assert stream.error is None
    assert stream.terminal.type == "response.completed"


def test_anything_after_a_failure_is_dropped(feed: Feed) -> None:
    stream = new_stream()
    assert feed(stream, error("bad_param", status=400), T0 + 1) is Step.FAIL
    err = stream.error
    assert feed(stream, created(), T0 + 2) is Step.DROP
    assert feed(stream, terminal(), T0 + 3) is Step.DROP
    assert stream.error is err and stream.terminal is None
    assert stream.dropped == 2


@pytest.mark.parametrize("seq", [1, 5, 1000])
def test_an_error_before_created_with_a_later_sequence_number_is_a_stale_frame(feed: Feed, seq: int) -> None:
    # Emitted inside the previous response's stream on this socket (it carries that stream's numbering).
    stream = new_stream(finished={"resp_before"})
    assert feed(stream, error("server_error", seq=seq, message="late"), T0 + 1) is Step.DROP
    assert stream.dropped == 1
    assert stream.error is None and stream.error_event is None and not stream.done
    assert feed_all(stream, feed, text_response(), T0 + 2)[-1] is Step.FINISH


@pytest.mark.parametrize("seq", [1, 5])
def test_on_a_fresh_socket_or_sse_an_error_before_created_is_request_level_whatever_its_number(
    feed: Feed, seq: int
) -> None:
    # No response ended before on this carrier, so nothing can be late: the server's message must reach the user.
    stream = new_stream()
    assert feed(stream, error("insufficient_quota", status=429, seq=seq, message="quota"), T0 + 1) is Step.FAIL
    assert isinstance(stream.error, APIError) and stream.error.code == "insufficient_quota"


@pytest.mark.parametrize("seq", [None, 0], ids=["no_seq", "seq_0"])
def test_an_error_before_created_without_a_later_sequence_number_is_request_level(
    feed: Feed, seq: int | None
) -> None:
    stream = new_stream()
    assert feed(stream, error("invalid_value", status=400, seq=seq), T0 + 1) is Step.FAIL
    assert isinstance(stream.error, APIError)
    assert stream.error.code == "invalid_value"
    assert stream.dropped == 0


# --- keep-alives and malformed payloads ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b" ", b"\n", b"  \r\n\t", "", "   ", bytearray(b""), bytearray(b" \n")],
    ids=repr,
)
def test_an_empty_payload_is_a_keep_alive_and_is_dropped(payload: str | bytes | bytearray) -> None:
    stream = new_stream()
    stream.feed_payload(json.dumps(created()).encode(), T0 + 1)
    assert stream.feed_payload(payload, T0 + 50) is Step.DROP
    assert stream.error is None and not stream.done
    assert stream.phase is Phase.FIRST_OUTPUT
    assert stream.dropped == 0  # a keep-alive is not a stale event
    # the stream carries on
    assert stream.feed_payload(json.dumps(delta()).encode(), T0 + 51) is Step.EMIT
    assert stream.phase is Phase.IDLE


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"not json", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"type": "response.created"} trailing', "not valid JSON"),
        (b"\xff\xfe\xfd", "not valid JSON"),  # invalid UTF-8
        (b'{"type": "response.output_text.delta", "delta": "\xe2\x82"}', "not valid JSON"),  # cut UTF-8
        (b"[1, 2]", "not an event object"),
        (b'"response.created"', "not an event object"),
        (b"42", "not an event object"),
        (b"null", "not an event object"),
        (b'{"sequence_number": 1}', "without a string 'type'"),
        (b'{"type": 5}', "without a string 'type'"),
        (b'{"type": null}', "without a string 'type'"),
        (b'{"type": ["response.created"]}', "without a string 'type'"),
        ("not json either", "not valid JSON"),
    ],
    ids=[
        "text",
        "truncated",
        "trailing_data",
        "invalid_utf8",
        "cut_utf8",
        "array",
        "string",
        "number",
        "null",
        "no_type",
        "int_type",
        "null_type",
        "list_type",
        "str_payload",
    ],
)
def test_a_malformed_payload_fails_with_a_protocol_error(payload: str | bytes, words: str) -> None:
    stream = new_stream()
    stream.feed_payload(json.dumps(created()).encode(), T0 + 1)
    assert stream.feed_payload(payload, T0 + 2) is Step.FAIL
    assert isinstance(stream.error, ProtocolError)
    assert words in str(stream.error)
    assert stream.done and math.isinf(stream.deadline())
    assert not stream.request_level_error  # the socket is not clean after garbage
    assert stream.feed_payload(json.dumps(terminal()).encode(), T0 + 3) is Step.DROP


def test_a_malformed_payload_before_anything_fails_too() -> None:
    stream = new_stream()
    assert stream.feed_payload(b"<html>502 Bad Gateway</html>", T0 + 1) is Step.FAIL
    assert isinstance(stream.error, ProtocolError)
    assert "502 Bad Gateway" in stream.error.message  # the preview helps the user


# --- errors (§1.10, §2.7) ------------------------------------------------------------------------------


def test_a_429_error_before_created_fails_with_a_rate_limit_error(feed: Feed) -> None:
    stream = new_stream()
    ev = error(
        "rate_limit_exceeded",
        status=429,
        message="Rate limit reached for gpt-test.",
        headers={"retry-after-ms": "1500", "x-ratelimit-remaining-requests": "0"},
    )
    assert feed(stream, ev, T0 + 1) is Step.FAIL
    err = stream.error
    assert isinstance(err, RateLimitError)
    assert err.status == 429 and err.code == "rate_limit_exceeded"
    assert err.retry_after == 1.5
    assert err.message == "Rate limit reached for gpt-test."
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert stream.request_level_error
    assert not stream.received and not stream.started
    assert stream.done


def test_a_401_error_before_created_fails_with_an_authentication_error(feed: Feed) -> None:
    stream = new_stream()
    assert (
        feed(stream, error("invalid_api_key", status=401, message="Incorrect API key."), T0 + 1) is Step.FAIL
    )
    assert isinstance(stream.error, AuthenticationError)
    assert stream.error.status == 401 and stream.error.code == "invalid_api_key"
    assert stream.request_level_error


def test_previous_response_not_found_fails_with_its_code_and_param(feed: Feed) -> None:
    # PROTOCOL.md B1: the continuation miss, request-level, on a named lane.
    stream = new_stream()
    ev = error(
        "previous_response_not_found",
        status=400,
        message="Previous response with id 'resp_stale123' not found.",
        param="previous_response_id",
    )
    ev["stream_id"] = "main"
    assert feed(stream, ev, T0 + 1) is Step.FAIL
    err = stream.error
    assert type(err) is APIError
    assert err.status == 400
    assert err.code == "previous_response_not_found"
    assert err.param == "previous_response_id"
    assert "resp_stale123" in err.message
    assert stream.request_level_error


@pytest.mark.parametrize(
    ("ev", "cls", "code"),
    [
        # the flat SDK shape (§2.7, §7.2)
        (
            {"type": "error", "code": "invalid_prompt", "message": "no", "param": None},
            APIError,
            "invalid_prompt",
        ),
        # the nested SSE shape, no status: the code alone makes it a rate-limit error
        (
            {
                "type": "error",
                "error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "q"},
            },
            RateLimitError,
            "insufficient_quota",
        ),
        (error("invalid_api_key", status=403), AuthenticationError, "invalid_api_key"),
    ],
    ids=["flat", "nested_no_status", "403"],
)
def test_request_level_error_shapes(feed: Feed, ev: Event, cls: type[APIError], code: str) -> None:
    stream = new_stream()
    assert feed(stream, ev, T0 + 1) is Step.FAIL
    assert type(stream.error) is cls
    assert stream.error.code == code


def test_an_error_inside_a_started_response_is_kept_until_response_failed(feed: Feed) -> None:
    # PROTOCOL.md B3: created, in_progress, error, response.failed.
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress()])
    err_ev = {
        "type": "error",
        "sequence_number": 2,
        "error": {
            "type": "insufficient_quota",
            "code": "insufficient_quota",
            "message": "quota",
            "param": None,
        },
    }
    assert feed(stream, err_ev, T0 + 5) is Step.DROP
    assert stream.error_event is not None and stream.error_event.data == err_ev
    assert stream.error is None and not stream.done
    # a second error does not replace the first
    assert feed(stream, error("server_error", seq=3), T0 + 6) is Step.DROP
    assert stream.error_event.data == err_ev
    failed = terminal("response.failed", seq=4, error={"code": "insufficient_quota", "message": "quota"})
    assert feed(stream, failed, T0 + 7) is Step.FINISH
    assert stream.terminal.type == "response.failed"
    assert stream.error is None
    assert not stream.request_level_error
    assert stream.error_event.data == err_ev


def test_an_error_with_a_later_sequence_number_inside_a_started_response_is_kept(feed: Feed) -> None:
    # The sequence-number rule only applies before response.created.
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress(), delta()])
    assert feed(stream, error("server_error", seq=7), T0 + 9) is Step.DROP
    assert stream.error_event is not None and stream.error_event.data["sequence_number"] == 7


@pytest.mark.parametrize("started", [False, True], ids=["before_created", "inside_response"])
def test_the_connection_cap_asks_for_a_new_connection(feed: Feed, started: bool) -> None:
    # PROTOCOL.md B2 / §1.9: no stream_id, no sequence number.
    stream = new_stream()
    if started:
        feed_all(stream, feed, [created(), in_progress()])
    ev = error(
        CONNECTION_LIMIT_CODE,
        status=400,
        message="Responses websocket connection limit reached (60 minutes). Create a new websocket "
        "connection to continue.",
    )
    assert feed(stream, ev, T0 + 5) is Step.RECONNECT
    assert isinstance(stream.error, APIError)
    assert stream.error.code == CONNECTION_LIMIT_CODE
    assert stream.error.status == 400
    assert stream.done and math.isinf(stream.deadline())
    assert stream.error_event is None
    if started:
        assert not stream.request_level_error  # the response had begun on this socket
    assert feed(stream, terminal(), T0 + 6) is Step.DROP


# --- waits: phases and deadlines -----------------------------------------------------------------------


def test_before_the_request_is_sent_the_connect_wait_applies() -> None:
    stream = new_stream(sent=False)
    assert stream.phase is Phase.CONNECT
    assert stream.deadline() == math.inf  # the transport's connect_timeout bounds this, not the stream
    assert not stream.done and not stream.received and not stream.started
    assert stream.dropped == 0 and stream.response_id is None


def test_sending_starts_the_first_output_wait() -> None:
    stream = new_stream(sent=False)
    stream.sent(T0)
    assert stream.phase is Phase.FIRST_OUTPUT
    assert stream.deadline() == T0 + FIRST
    err = stream.timeout_error()
    assert isinstance(err, StreamTimeoutError)
    assert err.phase == "first_event" and err.seconds == FIRST
    assert "first_event_timeout" in str(err)


def test_thinking_does_not_shorten_the_first_output_wait(feed: Feed) -> None:
    # Issue 10, bug 2: created / in_progress arrive at once, then a reasoning model is silent for minutes.
    stream = new_stream()
    thinking = [
        (created(), T0 + 0.1),
        (in_progress(), T0 + 0.2),
        (item_added("reasoning"), T0 + 0.3),
        (
            {"type": "response.reasoning_summary_part.added", "sequence_number": 3, "item_id": "rs_1"},
            T0 + 200,
        ),
        ({"type": "response.reasoning_summary_part.done", "sequence_number": 4, "item_id": "rs_1"}, T0 + 210),
        ({"type": "response.reasoning_summary_text.done", "sequence_number": 5, "text": ""}, T0 + 211),
        (item_done("reasoning", 6), T0 + 250),
        ({"type": "response.some_progress_event", "sequence_number": 7}, T0 + 260),
    ]
    for ev, now in thinking:
        assert feed(stream, ev, now) is Step.EMIT
        assert stream.phase is Phase.FIRST_OUTPUT, ev["type"]
        assert stream.deadline() == T0 + FIRST, ev["type"]
    assert stream.timeout_error().phase == "first_event"
    assert stream.received and stream.started


@pytest.mark.parametrize("etype", sorted(OUTPUT_DELTA_TYPES))
def test_each_output_delta_ends_the_first_output_wait(feed: Feed, etype: str) -> None:
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress()])
    assert feed(stream, delta(etype), T0 + 200) is Step.EMIT
    assert stream.phase is Phase.IDLE
    assert stream.deadline() == T0 + 200 + IDLE
    err = stream.timeout_error()
    assert err.phase == "idle" and err.seconds == IDLE
    assert "idle_timeout" in str(err)


def test_the_output_deltas_are_what_a_user_sees() -> None:
    for etype in (
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
    ):
        assert etype in OUTPUT_DELTA_TYPES
    assert not any(t.endswith((".done", ".added")) for t in OUTPUT_DELTA_TYPES)


@pytest.mark.parametrize("item_type", ["message", "function_call", "web_search_call", "custom_tool_call"])
def test_a_non_reasoning_output_item_ends_the_first_output_wait(feed: Feed, item_type: str) -> None:
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress()])
    assert feed(stream, item_added(item_type), T0 + 42) is Step.EMIT
    assert stream.phase is Phase.IDLE
    assert stream.deadline() == T0 + 42 + IDLE


@pytest.mark.parametrize(
    "ev",
    [
        item_added("reasoning"),
        {"type": "response.output_item.added", "sequence_number": 2, "output_index": 0},  # no item
        {"type": "response.output_item.added", "sequence_number": 2, "item": "msg_1"},  # not an object
        {"type": "response.content_part.added", "sequence_number": 2, "item_id": "rs_1"},
        {"type": "response.output_text.done", "sequence_number": 2, "text": ""},
        item_done("message"),
    ],
    ids=["reasoning_item", "no_item", "item_not_object", "part_added", "text_done", "item_done"],
)
def test_other_events_do_not_end_the_first_output_wait(feed: Feed, ev: Event) -> None:
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress()])
    assert feed(stream, ev, T0 + 100) is Step.EMIT
    assert stream.phase is Phase.FIRST_OUTPUT
    assert stream.deadline() == T0 + FIRST


def test_the_idle_deadline_follows_the_last_event(feed: Feed) -> None:
    stream = new_stream()
    feed_all(stream, feed, [created(), in_progress()])
    feed(stream, delta(seq=2), T0 + 10)
    assert stream.deadline() == T0 + 10 + IDLE
    feed(stream, delta(seq=3), T0 + 50)
    assert stream.deadline() == T0 + 50 + IDLE
    feed(stream, {"type": "response.output_text.done", "sequence_number": 4}, T0 + 170)
    assert stream.deadline() == T0 + 170 + IDLE
    assert stream.phase is Phase.IDLE
    # a dropped frame is not activity
    feed(stream, in_progress(OTHER), T0 + 200)
    assert stream.deadline() == T0 + 170 + IDLE
    # a later output delta does not bring back the first-output wait
    feed(stream, delta("response.reasoning_summary_text.delta", seq=5), T0 + 210)
    assert stream.phase is Phase.IDLE and stream.deadline() == T0 + 210 + IDLE


def test_the_stream_ends_with_no_deadline(feed: Feed) -> None:
    stream = new_stream()
    feed_all(stream, feed, text_response())
    assert stream.phase is Phase.DONE
    assert stream.deadline() == math.inf


def test_sending_twice_stays_in_the_first_output_wait() -> None:
    stream = new_stream(sent=False)
    assert stream.phase is Phase.CONNECT and stream.deadline() == math.inf
    stream.sent(T0)
    stream.sent(T0 + 5)  # a second call does not leave the first-output phase
    assert stream.phase is Phase.FIRST_OUTPUT


# --- counters and pass-through -------------------------------------------------------------------------


def test_received_started_and_dropped_count_what_they_say(feed: Feed) -> None:
    stream = new_stream(finished={OTHER})
    assert (stream.received, stream.started, stream.dropped) == (False, False, 0)
    feed(stream, terminal("response.completed", OTHER), T0 + 1)  # stale
    assert (stream.received, stream.started, stream.dropped) == (False, False, 1)
    feed(stream, error("server_error", seq=4), T0 + 2)  # stale error
    assert (stream.received, stream.started, stream.dropped) == (False, False, 2)
    feed(stream, {"type": "response.vendor_hello", "sequence_number": 0}, T0 + 3)
    assert (stream.received, stream.started, stream.dropped) == (True, False, 2)
    feed(stream, created(), T0 + 4)
    assert (stream.received, stream.started, stream.dropped) == (True, True, 2)
    feed(stream, created(OTHER), T0 + 5)
    assert stream.dropped == 3
    feed(stream, terminal(), T0 + 6)
    feed(stream, legacy_done("completed"), T0 + 7)
    assert (stream.received, stream.started, stream.dropped) == (True, True, 4)


@pytest.mark.parametrize("started", [False, True])
def test_unknown_event_types_pass_through(feed: Feed, started: bool) -> None:
    stream = new_stream()
    if started:
        feed_all(stream, feed, [created(), in_progress()])
    for etype in ("response.brand_new.delta", "codex.rate_limits", "keepalive", "x"):
        ev = {"type": etype, "sequence_number": 3, "payload": {"a": 1}}
        assert feed(stream, ev, T0 + 10) is Step.EMIT
        assert stream.event.type == etype and stream.event.data == ev  # type: ignore[union-attr]
    assert stream.error is None and not stream.done


def test_request_level_error_is_false_without_an_api_error_before_the_start(feed: Feed) -> None:
    fresh = new_stream()
    assert not fresh.request_level_error
    ok = new_stream()
    feed_all(ok, feed, text_response())
    assert not ok.request_level_error
    failed_inside = new_stream()
    feed_all(failed_inside, feed, [created(), error("server_error", seq=2), terminal("response.failed")])
    assert not failed_inside.request_level_error
    garbage = new_stream()
    garbage.feed_payload(b"}{", T0 + 1)
    assert not garbage.request_level_error


def test_feed_payload_accepts_str_bytes_and_bytearray() -> None:
    for wrap in (str, lambda s: s.encode(), lambda s: bytearray(s.encode())):
        stream = new_stream()
        steps = [stream.feed_payload(wrap(json.dumps(ev)), T0 + 1) for ev in text_response()]
        assert steps[-1] is Step.FINISH and stream.response_id == RID


@pytest.mark.parametrize(
    "rid", [["resp_x"], {"id": "resp_x"}, 42, None], ids=["list", "object", "int", "null"]
)
def test_a_response_id_that_is_not_a_string_is_no_id(feed: Feed, rid: Any) -> None:
    # A broken server's odd id must not raise out of the stream (nor poison ``finished`` later): it names nothing.
    stream = new_stream(finished={OTHER})
    ev = created()
    ev["response"]["id"] = rid
    assert feed(stream, ev, T0 + 1) is Step.EMIT
    assert stream.started and stream.response_id is None
    assert feed(stream, terminal(), T0 + 2) is Step.FINISH
    assert stream.response_id == RID


@pytest.mark.parametrize("status", [["completed"], {"s": 1}, 1], ids=["list", "object", "int"])
def test_a_legacy_response_done_whose_status_is_not_a_string_is_unusable(feed: Feed, status: Any) -> None:
    stream = new_stream()
    feed(stream, created(), T0 + 1)
    assert feed(stream, legacy_done(status), T0 + 2) is Step.EMIT
    assert stream.terminal is None and not stream.done
