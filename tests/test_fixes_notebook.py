"""Regression tests for the notebook-layer fixes (pure: no kernel, no sockets).

The frozen answer is what a reopened notebook, nbconvert or GitHub shows: it must keep what the user saw
while the turn streamed (the reasoning summary) without letting model text carry live HTML.
"""

from __future__ import annotations

from html.parser import HTMLParser

from markdown_it import MarkdownIt

from ipy_responses_ws.render import final_bundle
from ipy_responses_ws.session import TurnResult

# JupyterLab renders trusted Markdown outputs with raw HTML passed through: check the bundle the same way.
_TRUSTED_MD = MarkdownIt("commonmark", {"html": True})
HOSTILE = 'Plan <img src=x onerror="alert(1)"> then <script>alert(2)</script> [x](javascript:alert(3))'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(markdown: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(_TRUSTED_MD.render(markdown))
    return parser.tags


def test_the_frozen_answer_keeps_the_reasoning_summary_above_the_answer() -> None:
    r = TurnResult(
        text="The answer.", status="completed", reasoning_summary="**Planning** the answer", transport="ws"
    )
    data, _ = final_bundle(r)
    md = data["text/markdown"]
    assert md.index("Reasoning summary") < md.index("Planning") < md.index("The answer.")
    html = _TRUSTED_MD.render(md)
    quote = html[html.index("<blockquote>") : html.index("</blockquote>")]
    assert "Reasoning summary" in quote and "<strong>Planning</strong>" in quote  # Markdown still renders
    assert "The answer." not in quote and "The answer." in html
    assert data["text/plain"] == "The answer."  # plain text is the answer alone


def test_a_hostile_reasoning_summary_stays_inert_in_the_frozen_answer() -> None:
    r = TurnResult(text="fine", status="completed", reasoning_summary=HOSTILE, transport="ws")
    md = final_bundle(r)[0]["text/markdown"]
    tags = _tags(md)
    assert [t for t, _ in tags if t in ("img", "script", "iframe", "svg", "details")] == []
    assert all(not (a.get("href") or "").startswith("javascript:") for _, a in tags)
    assert "alert(1)" in md  # shown as text, not dropped


def test_no_summary_no_quote() -> None:
    md = final_bundle(TurnResult(text="Just this.", status="completed", transport="sse"))[0]["text/markdown"]
    assert "Reasoning summary" not in md and md.startswith("Just this.")


def test_status_names_function_calls_still_waiting_for_their_output() -> None:
    from ipy_responses_ws.chain import Chain, user_message
    from ipy_responses_ws.widgets import status_html

    c = Chain("tools")
    first = [user_message("use f")]
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_9", "name": "f", "arguments": "{}"}
    c.commit(
        c.plan(first, transport="ws", store=True, same_connection=True),
        first,
        {"id": "resp_1", "status": "completed", "output": [call]},
    )
    shown = status_html({"chains": {"tools": c.snapshot()}, "connections": []})
    assert c.snapshot()["pending_calls"] == ["call_9"]
    assert "1 function call awaiting tool output" in shown
    assert "pending_calls" not in Chain("plain").snapshot()  # no noise for chains without tools
