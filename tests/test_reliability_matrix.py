"""The fault matrix: every emulator fault × {WS, SSE} × {store on, off} × {foreground, background}.

The matrix is *data* (:data:`MATRIX`); the parametrized test below runs every cell, and
``python tests/test_reliability_matrix.py`` prints the same data as the Markdown table kept in
docs/reliability.md (``test_docs_table_matches_the_matrix`` fails if the two drift apart).

Each cell runs three turns on one chain against a zero-delay emulator:

1. a clean turn ``A`` (it gives the chain a history, and warms a connection so faults that need an existing
   connection — the lifetime cap, a socket killed between turns — have one). Faults on the WebSocket
   upgrade need a fresh connection, so for them (``faulted_turn=0``) ``A`` is skipped;
2. turn ``B`` with the fault armed (one shot): its outcome must be the cell's expected one — transparent
   recovery (the exact ``reply_for`` text, nothing duplicated in the live stream), a clear, typed error, or
   (the user-interrupt row) a cancel confirmed within 1 s that leaves a true prefix of the answer shown;
3. a clean turn ``C``: it must answer ``reply_for`` of the chain's *committed* user messages — ``A``, ``B`` if
   and only if ``B`` completed, then ``C`` — so a failed turn never becomes history and a recovered one does.

After the turns: no stale frames (every server event of ``C`` belongs to ``C``'s response and sequence
numbers start at 0 and rise), no leaked connections (``session.status()`` within the pool, nothing busy, and
every socket the emulator still holds open is one the session knows), and ``session.close()`` leaves no open
socket on the server.

Foreground = ``session.start`` + polling ``handle.get()`` like the magic's wait loop (DESIGN.md §2);
background = ``session.start(on_event=...)`` + waiting on ``handle.add_done_callback``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

KEY = "sk-test-FAKE-matrix-0123456789abcdef"

# --- the spec ----------------------------------------------------------------------------------------------

RECOVERS = "recovers"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class Expect:
    """The expected outcome of the faulted turn on one transport.

    ``outcome`` is :data:`RECOVERS` or the name of the error class in ``ipy_responses_ws.errors`` (any
    subclass counts). ``flag`` names a ``TurnResult`` attribute that must be truthy on recovery
    (``fallback_reason``, ``reconnected``); ``how`` is the human explanation that goes into the table.
    """

    outcome: str
    how: str
    flag: str | None = None
    served_by: str | None = None  # the transport that must have served the turn when it recovers
    attrs: tuple[tuple[str, Any], ...] = ()  # error attributes a user would read (status, code, phase)


@dataclass(frozen=True)
class FaultCase:
    """One row of the matrix: a fault (``Fault`` keyword arguments) and its outcome per transport."""

    id: str
    fault: dict[str, Any]
    ws: Expect
    sse: Expect
    settings: dict[str, Any] = field(default_factory=dict)
    # 1: the fault hits the second turn (a warm, reused connection); 0: the first turn (a fresh connection,
    # needed for faults on the WebSocket upgrade).
    faulted_turn: int = 1
    # "cancel": the user interrupts the faulted turn at its first delta (foreground: handle.cancel(), like
    # the magic on KeyboardInterrupt; background: session.stop_all(), like the Stop button).
    action: str | None = None
    # Known bugs: {(transport, store, mode) or (transport,) or (): reason}; cells marked xfail(strict).
    known_bugs: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def expect(self, transport: str) -> Expect:
        return self.ws if transport == "ws" else self.sse


UNAFFECTED = Expect(RECOVERS, "not applicable to this transport: the turn is unaffected")

# Small timeouts keep the stall cells short (the whole matrix must stay well under 90 s).
FAST = {"connect_timeout": 2.0, "first_event_timeout": 5.0, "idle_timeout": 5.0}

MATRIX: list[FaultCase] = [
    FaultCase(
        "refuse_upgrade 426",
        {"kind": "refuse_upgrade", "status": 426},
        Expect(RECOVERS, "falls back to SSE for the session (PROTOCOL.md §6)", "fallback_reason", "sse"),
        UNAFFECTED,
        faulted_turn=0,
    ),
    FaultCase(
        "refuse_upgrade 503",
        {"kind": "refuse_upgrade", "status": 503},
        Expect(RECOVERS, "handshake refused: falls back to SSE", "fallback_reason", "sse"),
        UNAFFECTED,
        faulted_turn=0,
    ),
    FaultCase(
        "unauthorized 401",
        {"kind": "unauthorized", "count": 2},
        Expect(
            "AuthenticationError",
            "401 on the upgrade, tried once over SSE (a gateway may refuse only the upgrade), 401 there too: "
            "names OPENAI_API_KEY, never the key",
            attrs=(("status", 401),),
        ),
        Expect(
            "AuthenticationError",
            "401 on the POST: names OPENAI_API_KEY, never the key",
            attrs=(("status", 401),),
        ),
        faulted_turn=0,
    ),
    FaultCase(
        "drop before any event, reused connection",
        {"kind": "drop", "after": 0},
        Expect(RECOVERS, "retried at once on a fresh connection (nothing was shown)", "retried"),
        Expect(RECOVERS, "nothing was shown: retried after a backoff", "retries"),
    ),
    FaultCase(
        "drop before any event, fresh connection",
        {"kind": "drop", "after": 0},
        Expect(RECOVERS, "nothing was shown: retried after a backoff", "retries"),
        Expect(RECOVERS, "nothing was shown: retried after a backoff", "retries"),
        faulted_turn=0,
    ),
    FaultCase(
        "drop mid-stream",
        {"kind": "drop", "after": 6},
        Expect("ConnectionClosedError", "text was shown: no silent retry; the turn fails"),
        Expect("ConnectionClosedError", "the body breaks off before a terminal event; the turn fails"),
    ),
    FaultCase(
        "close 1011 mid-stream",
        {"kind": "close", "code": 1011, "after": 6},
        Expect("ConnectionClosedError", "close code 1011 reported; the turn fails", attrs=(("code", 1011),)),
        Expect("ProtocolError", "the body ends early without a terminal event; the turn fails"),
    ),
    FaultCase(
        "close 1000 mid-stream",
        {"kind": "close", "code": 1000, "after": 6},
        Expect(
            "ConnectionClosedError",
            "a normal close before the terminal event is still a failed turn",
            attrs=(("code", 1000),),
        ),
        Expect("ProtocolError", "the body ends early without a terminal event; the turn fails"),
    ),
    FaultCase(
        "error 429 before the stream",
        {"kind": "error", "status": 429, "after": 0},
        Expect(RECOVERS, "wrapped `error` frame, status 429: waits its `retry-after` (1 s), retries", "retries"),
        Expect(RECOVERS, "HTTP 429: waits its `retry-after` (1 s), retries", "retries"),
    ),
    FaultCase(
        "error 429 before the stream, retries used up",
        {"kind": "error", "status": 429, "after": 0, "count": 2},
        Expect(
            "RateLimitError",
            "429 again after the one retry allowed: `retry_after` read from its headers",
            attrs=(("status", 429), ("code", "rate_limit_exceeded"), ("retry_after", 1.0)),
        ),
        Expect(
            "RateLimitError",
            "HTTP 429 again after the one retry allowed; `retry-after` read",
            attrs=(("status", 429), ("code", "rate_limit_exceeded"), ("retry_after", 1.0)),
        ),
        settings={"max_retries": 1},
    ),
    FaultCase(
        "error 500 before the stream",
        {"kind": "error", "status": 500, "after": 0},
        Expect(RECOVERS, "wrapped `error` frame, status 500: retried after a backoff", "retries"),
        Expect(RECOVERS, "HTTP 500: retried after a backoff", "retries"),
    ),
    FaultCase(
        "error 500 before the stream, no retries",
        {"kind": "error", "status": 500, "after": 0},
        Expect("APIError", "wrapped `error` frame, status 500", attrs=(("status", 500),)),
        Expect("APIError", "HTTP 500", attrs=(("status", 500),)),
        settings={"max_retries": 0},
    ),
    FaultCase(
        "error 500 mid-stream",
        {"kind": "error", "status": 500, "after": 6},
        Expect("ResponseFailedError", "`error` event then `response.failed`; the error's code is kept"),
        Expect("ResponseFailedError", "nested `error` event then `response.failed`; code kept"),
    ),
    FaultCase(
        "response.failed mid-stream",
        {"kind": "failed", "after": 6},
        Expect("ResponseFailedError", "`response.failed` terminal event"),
        Expect("ResponseFailedError", "nested `error` event then `response.failed`"),
    ),
    FaultCase(
        "stall mid-stream > idle_timeout",
        {"kind": "stall", "after": 6, "seconds": 1.5},
        Expect(
            "StreamTimeoutError",
            "idle timeout (0.3 s) between events; socket discarded",
            attrs=(("phase", "idle"),),
        ),
        Expect(
            "StreamTimeoutError",
            "idle timeout (0.3 s) between events; request aborted",
            attrs=(("phase", "idle"),),
        ),
        settings={"idle_timeout": 0.3},
    ),
    FaultCase(
        "stall before the first event",
        {"kind": "stall", "after": 0, "seconds": 1.5},
        Expect(
            "StreamTimeoutError",
            "first-event timeout (0.3 s); socket discarded",
            attrs=(("phase", "first_event"),),
        ),
        Expect("StreamTimeoutError", "first-event timeout (0.3 s)", attrs=(("phase", "first_event"),)),
        settings={"first_event_timeout": 0.3},
    ),
    FaultCase(
        "short stall < idle_timeout",
        {"kind": "stall", "after": 6, "seconds": 0.3},
        Expect(RECOVERS, "just slow: the answer completes"),
        Expect(RECOVERS, "just slow: the answer completes"),
    ),
    FaultCase(
        "malformed JSON frame",
        {"kind": "malformed", "variant": "json", "after": 6},
        Expect("ProtocolError", "invalid JSON: the socket is discarded"),
        Expect("ProtocolError", "invalid JSON in `data:`"),
    ),
    FaultCase(
        "binary frame",
        {"kind": "malformed", "variant": "binary", "after": 6},
        Expect("ProtocolError", "a binary frame is not a Responses event"),
        Expect("ProtocolError", "binary garbage in the body"),
    ),
    FaultCase(
        "invalid UTF-8",
        {"kind": "malformed", "variant": "utf8", "after": 6},
        Expect("ProtocolError", "invalid UTF-8: the socket is discarded"),
        Expect("ProtocolError", "invalid UTF-8 in the body"),
    ),
    FaultCase(
        "user interrupt mid-stream",
        {"kind": "stall", "after": 6, "seconds": 1.0},
        Expect(
            CANCELLED, "cancel confirmed at once; the dirty socket (the server keeps streaming) is closed"
        ),
        Expect(CANCELLED, "cancel confirmed at once; the request is aborted"),
        action="cancel",
    ),
    FaultCase(
        "connection cap reached",
        {"kind": "cap", "responses": 1},
        Expect(RECOVERS, "`websocket_connection_limit_reached`: reconnect and retry", "reconnected"),
        UNAFFECTED,
    ),
]

TRANSPORTS = ("ws", "sse")
STORES = (True, False)
MODES = ("foreground", "background")


def cells() -> Iterator[tuple[FaultCase, str, bool, str]]:
    for case in MATRIX:
        for transport in TRANSPORTS:
            for store in STORES:
                for mode in MODES:
                    yield case, transport, store, mode


def _bug_for(case: FaultCase, transport: str, store: bool, mode: str) -> str | None:
    for key in ((transport, store, mode), (transport, store), (transport,), ()):
        if key in case.known_bugs:
            return case.known_bugs[key]
    return None


def _params() -> list[Any]:
    out = []
    for case, transport, store, mode in cells():
        marks = []
        bug = _bug_for(case, transport, store, mode)
        if bug:
            marks.append(pytest.mark.xfail(strict=True, reason=f"bug: {bug}"))
        cid = f"{case.id.replace(' ', '_')}-{transport}-store_{'on' if store else 'off'}-{mode}"
        out.append(pytest.param(case, transport, store, mode, id=cid, marks=marks))
    return out


# --- the Markdown table (docs/reliability.md) ----------------------------------------------------------------


def _cell_text(case: FaultCase, transport: str) -> str:
    exp = case.expect(transport)
    what = {RECOVERS: "**recovers**", CANCELLED: "**cancelled**"}.get(exp.outcome, f"`{exp.outcome}`")
    bugs = [
        r
        for (k, r) in case.known_bugs.items()
        if (not k or k[0] == transport)  # a bug on this transport (any store / mode)
    ]
    bug = f" — **known bug**: {bugs[0]}" if bugs else ""
    return f"{what}: {exp.how}{bug}"


def _fault_text(fault: dict[str, Any]) -> str:
    args = " ".join(f"{k}={v}" for k, v in fault.items() if k != "kind")
    return f"`{fault['kind']}{(' ' + args) if args else ''}`"


def markdown_table() -> str:
    """The matrix as Markdown: one row per fault, the expected outcome on each transport."""
    lines = [
        "| fault | Fault(...) | WebSocket | SSE |",
        "|---|---|---|---|",
    ]
    for case in MATRIX:
        lines.append(
            f"| {case.id} | {_fault_text(case.fault)} | {_cell_text(case, 'ws')} | {_cell_text(case, 'sse')} |"
        )
    n = len(MATRIX) * len(TRANSPORTS) * len(STORES) * len(MODES)
    lines += [
        "",
        f"Each row runs with store on and off, in the foreground and in the background: {n} cells. In every "
        "cell the next turn answers with the exact `reply_for` text of the chain's committed user messages "
        "(the faulted prompt is included only when the turn recovered), no stale frame reaches it, the "
        "session holds at most `pool_size` idle connections, and closing the session leaves no socket open "
        "on the server.",
    ]
    return "\n".join(lines)


# --- the runner ---------------------------------------------------------------------------------------------


@dataclass
class Turn:
    """What a user would have seen of one turn: the events in order and the final result."""

    events: list[Any]
    result: Any
    error: BaseException | None
    cancel_seconds: float | None = None


def run_turn(
    session: Any, prompt: str, *, mode: str, timeout: float = 20.0, cancel_at_delta: bool = False, **kw: Any
) -> Turn:
    """Run one turn in the foreground (poll the handle) or the background (on_event + done callback).

    With *cancel_at_delta* the user interrupts the turn as soon as the first text delta is visible;
    ``Turn.cancel_seconds`` is how long the loop side took to confirm.
    """
    events: list[Any] = []
    cancel_seconds: float | None = None
    if mode == "foreground":
        handle = session.start(prompt, **kw)
        deadline = time.monotonic() + timeout
        while True:
            item = handle.get(timeout=0.05)
            if item is not None:
                events.append(item)
                if cancel_at_delta and cancel_seconds is None and getattr(item, "delta", None):
                    t0 = time.perf_counter()
                    assert handle.cancel(wait=1.0), "the loop side did not confirm the cancel within 1 s"
                    cancel_seconds = time.perf_counter() - t0
            elif handle.done():
                # Drain what is left after the end (get() returns None once everything was delivered).
                while (item := handle.get(timeout=0.01)) is not None:
                    events.append(item)
                break
            if time.monotonic() > deadline:
                handle.cancel()
                raise AssertionError(f"turn did not finish within {timeout} s")
    else:
        done = threading.Event()
        saw_delta = threading.Event()
        lock = threading.Lock()

        def on_event(item: Any) -> None:
            with lock:
                events.append(item)
            if getattr(item, "delta", None):
                saw_delta.set()

        handle = session.start(prompt, on_event=on_event, **kw)
        handle.add_done_callback(lambda _result: done.set())
        if cancel_at_delta:
            assert saw_delta.wait(timeout), "no delta arrived"
            t0 = time.perf_counter()
            assert session.stop_all() >= 1, "stop_all() found no running turn"
            cancel_seconds = time.perf_counter() - t0
        assert done.wait(timeout), f"background turn did not finish within {timeout} s"
    try:
        result = handle.result(timeout=timeout)
        error = result.error
    except Exception as exc:  # some engines raise from result(); both are a clear error to the user
        result, error = None, exc
    return Turn(events, result, error, cancel_seconds)


def _deltas(events: list[Any]) -> str:
    return "".join(
        e.delta
        for e in events
        if getattr(e, "type", "") == "response.output_text.delta" and getattr(e, "delta", None) is not None
    )


def _server_events(events: list[Any]) -> list[Any]:
    return [e for e in events if not getattr(e, "type", "").startswith("notice.")]


def assert_no_stale_frames(turn: Turn) -> None:
    """Every server event of the turn belongs to its response, numbered from 0 upwards."""
    rid = turn.result.response_id
    evs = _server_events(turn.events)
    assert evs, "no server events were delivered"
    for e in evs:
        resp = e.response
        if resp is not None:
            assert resp.get("id") == rid, f"stale frame from {resp.get('id')} in the turn of {rid}"
    seqs = [e.sequence_number for e in evs if e.sequence_number is not None]
    assert seqs == sorted(seqs) and seqs[0] == 0, f"sequence numbers out of order: {seqs[:20]}"


def open_server_connections(emu: Any) -> list[Any]:
    """The emulator's WebSocket connections that the server still considers open."""
    return [c for c in emu.connections if c.transport == "ws" and c.status == 101 and c.closed_at is None]


def _error_class(name: str) -> type[BaseException]:
    from ipy_responses_ws import errors

    return getattr(errors, name)


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["plain", "tls+pings"])
def emulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The matrix runs twice: on plain http/ws, and on https/wss with uvicorn-style keepalive pings (fast)."""
    from emulator_fixtures import FAST_PINGS

    from ipy_responses_ws.emulator import Emulator

    real = request.param == "tls+pings"
    with Emulator(api_key=KEY, **({"tls": True, **FAST_PINGS} if real else {})).run_in_thread() as emu:
        yield emu
    if real:
        assert emu.ping_timeouts == 0, "a pooled socket missed the server's pings"


@pytest.mark.parametrize(("case", "transport", "store", "mode"), _params())
def test_fault_cell(emulator: Any, case: FaultCase, transport: str, store: bool, mode: str) -> None:
    from ipy_responses_ws.emulator import Fault, reply_for
    from ipy_responses_ws.session import ResponsesSession

    emulator.clear_faults()
    settings = {**FAST, **case.settings}
    session = ResponsesSession(
        base_url=emulator.base_url,
        api_key=KEY,
        transport=transport,
        store=store,
        pool_size=2,
        ca_file=getattr(emulator, "ca_path", None),
        **settings,
    )
    tag = f"{case.id}/{transport}/{store}/{mode}"
    a, b, c = f"first turn of {tag}", f"faulted turn of {tag}", f"turn after {tag}"
    committed: list[str] = []
    try:
        if case.faulted_turn == 1:
            first = run_turn(session, a, mode=mode)
            assert first.error is None and first.result.text == reply_for([a])
            committed.append(a)

        emulator.add_fault(Fault(**case.fault))
        faulted = run_turn(session, b, mode=mode, cancel_at_delta=case.action == "cancel")
        emulator.clear_faults()
        exp = case.expect(transport)
        if exp.outcome == CANCELLED:
            assert faulted.result.status == "cancelled" and faulted.error is None, faulted.result
            assert faulted.cancel_seconds is not None and faulted.cancel_seconds < 1.0
            # What was shown stays a true prefix of the answer; the chain does not take the turn.
            assert faulted.result.text and reply_for([*committed, b]).startswith(faulted.result.text)
        elif exp.outcome == RECOVERS:
            assert faulted.error is None, f"expected recovery, got {faulted.error!r}"
            assert faulted.result.status == "completed"
            assert faulted.result.text == reply_for([*committed, b])
            # What the user saw streaming is the answer once: no duplicated or stale text.
            assert _deltas(faulted.events) == faulted.result.text
            if exp.flag:
                assert getattr(faulted.result, exp.flag), f"expected {exp.flag} on the result"
            if exp.served_by:
                assert faulted.result.transport == exp.served_by
            committed.append(b)
        else:
            assert faulted.error is not None, "expected a clear error, the turn completed"
            assert isinstance(faulted.error, _error_class(exp.outcome)), repr(faulted.error)
            if faulted.result is not None:
                assert faulted.result.status in ("failed", "incomplete"), faulted.result.status
            for name, value in exp.attrs:
                assert getattr(faulted.error, name) == value, (name, faulted.error)
            text = str(faulted.error)
            assert text.strip() and KEY not in text
            if exp.outcome == "StreamTimeoutError":
                # The timeout fired, not the end of the stall: the user waited the timeout, no more.
                assert faulted.result.elapsed < case.fault["seconds"], faulted.result.elapsed

        after = run_turn(session, c, mode=mode)
        assert after.error is None, f"the chain did not survive {case.id}: {after.error!r}"
        assert after.result.text == reply_for([*committed, c])
        assert_no_stale_frames(after)
        assert _deltas(after.events) == after.result.text

        status = session.status()
        conns = status["connections"]
        assert len(conns) <= 2, conns
        assert not any(cn["busy"] for cn in conns), conns
        # The server holds no socket the session does not know about (a dropped or dirty one was closed).
        assert len(open_server_connections(emulator)) <= len(conns)
    finally:
        session.close()
    deadline = time.monotonic() + 3
    while open_server_connections(emulator) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open_server_connections(emulator) == [], "session.close() left sockets open on the server"


def test_docs_table_matches_the_matrix() -> None:
    """docs/reliability.md carries the table generated from MATRIX, verbatim."""
    assert markdown_table() in DOC.read_text(encoding="utf-8"), (
        "docs/reliability.md is out of date: run `python tests/test_reliability_matrix.py --write`"
    )


DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def write_docs_table() -> None:
    """Replace the table between the matrix markers in docs/reliability.md."""
    text = DOC.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    # `python tests/test_reliability_matrix.py` prints the table; `--write` updates docs/reliability.md.
    if "--write" in sys.argv:
        write_docs_table()
    else:
        sys.stdout.write(markdown_table() + "\n")
