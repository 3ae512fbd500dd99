"""What the status line and the frozen footer say about retries and ids (pure: no kernel, no widgets)."""

from __future__ import annotations

from ipy_responses_ws.bundle import final_bundle
from ipy_responses_ws.events import Notice
from ipy_responses_ws.results import TurnResult
from ipy_responses_ws.status_text import footer_text, short_id
from ipy_responses_ws.view_state import TurnState

GATEWAY_ID = "resp_" + "Zm9vYmFy" * 58  # LiteLLM's HTTP ids are ~470 characters of base64


def test_a_backoff_is_shown_live_with_its_delay_and_reason() -> None:
    state = TurnState()
    state.apply(Notice("retry", {"reason": "429 rate limited", "delay": 1.2, "attempt": 1, "of": 2}))
    line = state.status_line()
    assert "retrying in 1.2 s: 429 rate limited" in line
    assert "retry 1/2 after 429 rate limited" in line
    state.apply(Notice("connecting", {"transport": "ws"}))
    assert "retrying in" not in state.status_line()  # the wait is over; the note stays
    assert "retry 1/2" in state.status_line()


def test_long_ids_are_shortened_where_shown_and_kept_whole_where_stored() -> None:
    result = TurnResult(text="hi", status="completed", transport="sse", response_id=GATEWAY_ID, retries=1)
    footer = footer_text(result)
    assert GATEWAY_ID not in footer and short_id(GATEWAY_ID) in footer and len(short_id(GATEWAY_ID)) <= 21
    assert "retried 1×" in footer
    state = TurnState()
    state.response_id = GATEWAY_ID
    assert GATEWAY_ID not in state.status_line()
    assert short_id("resp_0a1b2c") == "resp_0a1b2c"  # OpenAI-length ids are shown whole
    bundle, metadata = final_bundle(result)
    assert GATEWAY_ID not in bundle["text/markdown"]  # the footer shows the short form
    assert GATEWAY_ID in str(metadata)  # the full id stays in the saved output's metadata


def test_server_error_text_in_the_live_view_is_redacted() -> None:
    """The live view shows a failed response's message before the engine's (redacted) error replaces it."""
    from ipy_responses_ws.events import ServerEvent
    from ipy_responses_ws.redact import register_secret

    secret = "sk-gateway-canary-7a7a7a7a7a7a"
    register_secret(secret)
    state = TurnState()
    state.apply(ServerEvent("error", {"type": "error", "error": {"message": f"bad key {secret}"}}))
    failed = {"id": "resp_1", "status": "failed", "error": {"message": f"echo: Bearer {secret}"}}
    state.apply(ServerEvent("response.failed", {"type": "response.failed", "response": failed}))
    assert secret not in (state.error or "") and secret not in state.status_line()
