"""The per-response protocol core: one request's events in, decisions out (no I/O).

Like the ``websockets`` library's Sans-I/O ``protocol.py``, :class:`ResponseStream` never touches a socket. A
transport (WebSocket, a ``stream_id`` lane, SSE) creates one per request, tells it when the request went out
(:meth:`ResponseStream.sent`), feeds it every payload or event that may belong to the request
(:meth:`ResponseStream.feed_payload` / :meth:`ResponseStream.feed`) and does what the returned :class:`Step`
says. It also answers which wait applies now (:attr:`ResponseStream.phase`, :meth:`ResponseStream.deadline`).

The rules, with their protocol references (PROTOCOL.md):

* **Belongs to this response?** The response id comes from ``response.created`` (or ``queued`` /
  ``in_progress`` if a server skips it). An event that carries another response's id is :attr:`Step.DROP`:
  stale, from a response that ended or was abandoned on the same socket. So is an event carrying an id in
  ``finished`` (responses already ended on this socket or lane), an ``error`` before ``response.created`` whose
  ``sequence_number`` is past 0 (emitted inside another response's stream), and **anything after the terminal
  event** (a gateway that sends both ``response.completed`` and a v1 ``response.done``, a late ``error``): it
  is never read as the next answer.
* **Terminal** (§2.7): ``response.completed`` / ``incomplete`` / ``failed`` → :attr:`Step.FINISH`. The obsolete
  v1 ``response.done`` (§1.2, §7.10) is mapped by its ``response.status``. A cancelled status (background mode)
  ends the stream as ``response.failed`` with the status kept in the snapshot.
* **Errors** (§1.10): ``websocket_connection_limit_reached`` → :attr:`Step.RECONNECT`; an ``error`` before
  ``response.created`` is request-level: nothing else comes, :attr:`Step.FAIL` with the API error; an ``error``
  inside a started response is kept (:attr:`ResponseStream.error_event`) because ``response.failed`` follows.
* **Malformed** (not JSON, not an object, no string ``type``) → :attr:`Step.FAIL` with a ``ProtocolError``.
  An empty or whitespace-only WS text frame is a gateway keep-alive: :attr:`Step.DROP`.
* **Waits** (:class:`Phase`): ``CONNECT`` until the request is sent (the transport's ``connect_timeout``);
  ``FIRST_OUTPUT`` from the request until the first *output* event, under ``first_event_timeout``: a reasoning
  model is silent between its reasoning item's ``added`` and ``done`` for minutes, and ``response.created`` /
  ``in_progress`` arriving at once must not shorten that wait; then ``IDLE``: ``idle_timeout`` between events.
"""

from __future__ import annotations

import enum
from collections.abc import Container
from typing import Any

from .errors import APIError, ProtocolError, ResponsesError, StreamTimeoutError
from .events import TERMINAL_TYPES, ServerEvent, error_from_event, from_legacy_done, parse_event

__all__ = [
    "ResponseStream",
    "Step",
    "Phase",
    "TERMINAL_TYPES",
    "OUTPUT_DELTA_TYPES",
    "CONNECTION_LIMIT_CODE",
]

#: Deltas of something a user sees: the first one ends the thinking wait.
OUTPUT_DELTA_TYPES = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.custom_tool_call_input.delta",
        "response.code_interpreter_call_code.delta",
        "response.audio.delta",
        "response.audio.transcript.delta",
    }
)
CONNECTION_LIMIT_CODE = "websocket_connection_limit_reached"
_STARTED_TYPES = frozenset({"response.created", "response.queued", "response.in_progress"})


class Step(enum.Enum):
    """What the transport does with one fed event."""

    EMIT = "emit"  # deliver :attr:`ResponseStream.event` to the consumer
    DROP = "drop"  # stale or keep-alive: ignore it
    FINISH = "finish"  # deliver :attr:`ResponseStream.event`, the terminal; the response is over
    RECONNECT = "reconnect"  # the server wants a new connection (connection cap, §1.9)
    FAIL = "fail"  # the request failed: raise :attr:`ResponseStream.error`


class Phase(enum.Enum):
    """Which wait applies now."""

    CONNECT = "connect"
    FIRST_OUTPUT = "first_output"
    IDLE = "idle"
    DONE = "done"


class ResponseStream:
    """The decisions for one request's events. Not thread-safe; one per request; no I/O.

    *finished* holds ids of responses that already ended on the same socket or lane (their frames are
    stale); it is read, never changed. Times are plain floats from the caller's clock (``loop.time()``).
    """

    __slots__ = (
        "first_output_timeout",
        "idle_timeout",
        "finished",
        "phase",
        "response_id",
        "received",
        "started",
        "event",
        "terminal",
        "error",
        "error_event",
        "dropped",
        "_sent_at",
        "_last_at",
    )

    def __init__(
        self,
        *,
        first_output_timeout: float,
        idle_timeout: float,
        finished: Container[str] = (),
    ) -> None:
        self.first_output_timeout = first_output_timeout
        self.idle_timeout = idle_timeout
        self.finished = finished
        self.phase = Phase.CONNECT
        self.response_id: str | None = None
        self.received = False  # an event of this response was accepted (EMIT or FINISH)
        self.started = False  # response.created (or queued / in_progress) arrived
        self.event: ServerEvent | None = None  # the event to deliver for EMIT / FINISH
        self.terminal: ServerEvent | None = None
        self.error: ResponsesError | None = None  # for FAIL and RECONNECT
        self.error_event: ServerEvent | None = None  # an error inside the response; response.failed follows
        self.dropped = 0  # stale events dropped, for logs and tests
        self._sent_at = 0.0
        self._last_at = 0.0

    # --- time ------------------------------------------------------------------------------------------

    def sent(self, now: float) -> None:
        """The request went out at *now*: the first-output wait starts."""
        self._sent_at = self._last_at = now
        if self.phase is Phase.CONNECT:
            self.phase = Phase.FIRST_OUTPUT

    def deadline(self) -> float:
        """When the current wait runs out (same clock as ``sent``/``feed``); ``inf`` before sending or after the end.

        Before the first output the bound is ``first_event_timeout`` from the request, whatever non-output
        events (created, in_progress, a reasoning item) arrive meanwhile: that is the model thinking.
        """
        phase = self.phase
        if phase is Phase.IDLE:
            return self._last_at + self.idle_timeout
        if phase is Phase.FIRST_OUTPUT:
            return self._sent_at + self.first_output_timeout
        return float("inf")

    def timeout_error(self) -> StreamTimeoutError:
        """The error for a deadline that passed, naming the wait that applied."""
        if self.phase is Phase.IDLE:
            return StreamTimeoutError(phase="idle", seconds=self.idle_timeout)
        return StreamTimeoutError(phase="first_event", seconds=self.first_output_timeout)

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    # --- events ----------------------------------------------------------------------------------------

    def feed_payload(self, payload: str | bytes | bytearray, now: float) -> Step:
        """Parse one WS text frame or SSE ``data:`` payload and :meth:`feed` it."""
        if self.phase is Phase.DONE:
            self.dropped += 1
            return Step.DROP
        try:
            ev = parse_event(payload)
        except ProtocolError as exc:
            if not payload.strip():
                return Step.DROP  # an empty keep-alive frame (some gateways send them; docker-agent#2300)
            return self._fail(exc)
        return self.feed(ev, now)

    def feed(self, ev: ServerEvent, now: float) -> Step:
        """Decide what *ev* means for this response. For EMIT/FINISH deliver :attr:`event` (possibly mapped)."""
        if self.phase is Phase.DONE:
            self.dropped += 1
            return Step.DROP
        etype = ev.type
        data = ev.data
        resp = data.get("response")
        if resp.__class__ is dict:
            rid = resp.get("id")  # type: ignore[union-attr]
            if rid.__class__ is not str:
                rid = None  # a broken server's odd id names nothing (and must not raise: unhashable)
            if rid is not None and (
                rid in self.finished or (self.response_id is not None and rid != self.response_id)
            ):
                self.dropped += 1
                return Step.DROP
        else:
            rid = None
        if etype == "error":
            return self._on_error(ev)
        if etype == "response.done":
            mapped = from_legacy_done(ev)
            if mapped is None:
                # A v1 terminal whose status says nothing usable: deliver it, and keep waiting (the stream
                # then ends with a clear "no terminal event" error or a timeout).
                self._accept(now)
                self.event = ev
                return Step.EMIT
            ev = mapped
            etype = mapped.type
        if etype in TERMINAL_TYPES:
            if self.response_id is None and rid is not None:
                self.response_id = rid
            self._accept(now)
            self.event = self.terminal = ev
            self.phase = Phase.DONE
            return Step.FINISH
        if etype in _STARTED_TYPES:
            if self.response_id is None and rid is not None:
                self.response_id = rid
            self.started = True
        elif self.phase is Phase.FIRST_OUTPUT and (
            etype in OUTPUT_DELTA_TYPES or (etype == "response.output_item.added" and _is_output_item(data))
        ):
            self.phase = Phase.IDLE
        self._accept(now)
        self.event = ev
        return Step.EMIT

    def _accept(self, now: float) -> None:
        self.received = True
        self._last_at = now

    def _on_error(self, ev: ServerEvent) -> Step:
        if not self.started and self.finished:
            seq = ev.data.get("sequence_number")
            if seq.__class__ is int and seq > 0:  # type: ignore[operator]
                # A request-level error is the only event of its request (no sequence number, or 0); one with
                # a later number was emitted inside another response's stream: a late frame of a response that
                # ended on this socket before (so never on SSE, or on a socket's first request).
                self.dropped += 1
                return Step.DROP
        err = error_from_event(ev)
        if err.code == CONNECTION_LIMIT_CODE:
            self.error = err
            self.phase = Phase.DONE
            return Step.RECONNECT
        if self.started:
            # Inside a started response: response.failed follows and carries the end (§2.7, §1.10).
            if self.error_event is None:
                self.error_event = ev
            return Step.DROP
        return self._fail(err)  # request-level: no response.created, nothing else will come

    def _fail(self, err: ResponsesError) -> Step:
        self.error = err
        self.phase = Phase.DONE
        return Step.FAIL

    @property
    def request_level_error(self) -> bool:
        """The request failed with an API error before the response started: the socket stays clean."""
        return isinstance(self.error, APIError) and not self.started

    def __repr__(self) -> str:
        return (
            f"ResponseStream(phase={self.phase.value}, response_id={self.response_id!r}, "
            f"received={self.received}, dropped={self.dropped})"
        )


def _is_output_item(data: dict[str, Any]) -> bool:
    """``output_item.added`` of anything but a reasoning item counts as output (a message, a tool call)."""
    item = data.get("item")
    return isinstance(item, dict) and item.get("type") != "reasoning"
