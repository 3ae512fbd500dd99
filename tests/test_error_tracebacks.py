"""A stored error keeps its story but no frames: the key cannot be read from its traceback's locals.

A ``TurnResult.error`` crosses from the I/O loop into user cells, where renderers that show frame locals
(IPython's ``%xmode Verbose``, rich, Sentry) would print whatever the loop-side frames held: request headers,
hence the API key. ``strip_tracebacks`` drops the frames of the error and of everything chained to it.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator

import pytest

from ipy_responses_ws.emulator import Emulator
from ipy_responses_ws.errors import AuthenticationError, ConnectError, strip_tracebacks
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-tracebacks-0123456789abcdef"
WRONG = "sk-test-FAKE-tracebacks-WRONG-9876543210"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


def test_strip_tracebacks_clears_the_whole_chain() -> None:
    def leaky() -> None:
        headers = {"Authorization": f"Bearer {KEY}"}  # noqa: F841 - the local a verbose traceback would print
        raise ConnectionError("refused")

    try:
        try:
            leaky()
        except ConnectionError as inner:
            raise ConnectError("Could not connect.", url="http://127.0.0.1:9") from inner
    except ConnectError as exc:
        err = exc
    assert err.__cause__ is not None and err.__cause__.__traceback__ is not None  # the leak being guarded
    assert strip_tracebacks(err) is err
    assert err.__traceback__ is None and err.__cause__.__traceback__ is None
    shown = "".join(traceback.TracebackException.from_exception(err, capture_locals=True).format())
    assert "refused" in shown and "Could not connect." in shown  # the story stays readable
    assert KEY not in shown


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_rejected_key_leaves_no_frames_to_inspect(emu: Emulator, transport: str) -> None:
    with ResponsesSession(base_url=emu.base_url, api_key=WRONG, transport=transport) as s:
        r = s.respond("who am I")
    assert isinstance(r.error, AuthenticationError)
    chain: list[BaseException] = []
    exc: BaseException | None = r.error
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert all(e.__traceback__ is None for e in chain)
    shown = "".join(traceback.TracebackException.from_exception(r.error, capture_locals=True).format())
    assert WRONG not in shown and "OPENAI_API_KEY" in shown
