"""The frozen answer: the plain bundle that replaces the live view when a turn ends (pure: no kernel, no sockets).

It is what a reopened notebook, nbconvert or GitHub shows: it must keep what the user saw while the turn
streamed (the reasoning summary) without letting model text carry live HTML.
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


def test_an_answer_without_a_summary_has_no_quote() -> None:
    md = final_bundle(TurnResult(text="Just this.", status="completed", transport="sse"))[0]["text/markdown"]
    assert "Reasoning summary" not in md and md.startswith("Just this.")
