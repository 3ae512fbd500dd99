"""Markdown rendering is safe, block freezing is exact and keeps the live tail short, footers read well."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from ipy_responses_ws.pacing import TextRate, adaptive_interval
from ipy_responses_ws.render import (
    BlockFreezer,
    CoalescingClock,
    final_bundle,
    footer_text,
    format_seconds,
    format_usage,
    render_markdown,
    safe_link,
    safe_markdown,
)

DOC = (
    "# Title\n\nSome *para* text\nmore.\n\n- a\n- b\n\n1. x\n2. y\n\n```python\ndef f():\n    return 1\n```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n> quote\n\nEnd para.\n"
)


# -- safety ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        "<iframe src='https://evil.example'></iframe>",
        '<a href="javascript:alert(1)">x</a>',
    ],
)
def test_model_html_arrives_as_inert_text(payload: str) -> None:
    html = render_markdown(f"hello {payload} world")
    assert "<img" not in html and "<script" not in html and "<iframe" not in html and "<a " not in html
    assert "&lt;" in html  # shown to the reader as text, not dropped


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "vbscript:x", "data:text/html,x"],
)
def test_dangerous_link_schemes_are_not_links(url: str) -> None:
    html = render_markdown(f"[click]({url}) and ![img]({url})")
    assert "href=" not in html and "<img" not in html
    assert "click" in html


def test_autolinks_with_javascript_scheme_stay_text() -> None:
    html = render_markdown("<javascript:alert(1)>")
    assert "href" not in html


def test_safe_links_render_and_open_in_a_new_tab() -> None:
    html = render_markdown("[docs](https://example.com/a?b=1) [rel](notes/a.md) [mail](mailto:a@b.c)")
    assert html.count("<a ") == 3
    assert 'href="https://example.com/a?b=1"' in html
    assert 'rel="noopener noreferrer nofollow"' in html and 'target="_blank"' in html


def test_linkify_is_off() -> None:
    assert "<a" not in render_markdown("see https://example.com now")


@pytest.mark.parametrize(
    ("url", "ok"),
    [("https://x", True), ("#frag", True), ("a/b:c", True), ("javascript:x", False), ("file:///etc", False)],
)
def test_safe_link(url: str, ok: bool) -> None:
    assert safe_link(url) is ok


def test_markdown_features_render() -> None:
    html = render_markdown(DOC)
    for tag in ("<h1>", "<em>", "<ul>", "<ol>", '<code class="language-python">', "<table>", "<blockquote>"):
        assert tag in html


# -- block freezing ----------------------------------------------------------------------------------------


def _stream(freezer: BlockFreezer, text: str, seed: int = 1, max_step: int = 7) -> tuple[list[str], int]:
    rnd = random.Random(seed)
    chunks: list[str] = []
    longest_tail = 0
    i = 0
    while i < len(text):
        step = rnd.randint(1, max_step)
        freezer.feed(text[i : i + step])
        i += step
        chunk = freezer.freeze()
        if chunk:
            chunks.append(chunk)
        longest_tail = max(longest_tail, len(freezer.tail))
    last = freezer.freeze(final=True)
    if last:
        chunks.append(last)
    return chunks, longest_tail


@pytest.mark.parametrize("min_chunk", [1, 64, 500, 100_000])
def test_frozen_chunks_concatenate_to_the_full_rendering(min_chunk: int) -> None:
    doc = DOC * (12 if min_chunk < 1000 else 4)
    freezer = BlockFreezer(min_chunk=min_chunk, max_tail=10**9)
    chunks, _ = _stream(freezer, doc)
    assert "".join(chunks) == render_markdown(doc)
    assert freezer.text == doc
    if min_chunk == 1:
        assert len(chunks) > 50  # every finished block froze on its own
    if min_chunk == 100_000:
        assert len(chunks) == 1


def test_the_last_block_is_never_frozen_while_streaming() -> None:
    freezer = BlockFreezer(min_chunk=1)
    freezer.feed("First paragraph.\n\nSecond para")
    assert freezer.freeze() is None  # an unfinished line could still continue a list or quote
    freezer.feed("graph\n")
    assert freezer.freeze() == "<p>First paragraph.</p>\n"
    assert freezer.tail == "Second paragraph\n"
    freezer.feed("===\n")  # a setext underline turns the live paragraph into a heading
    assert freezer.freeze() is None
    assert freezer.tail_html() == "<h1>Second paragraph</h1>\n"


def test_crlf_split_across_deltas_is_one_newline() -> None:
    freezer = BlockFreezer(min_chunk=1)
    for piece in ["a\r", "\n\r", "\nb\r", "\n"]:
        freezer.feed(piece)
    assert freezer.text == "a\n\nb\n"


def _assert_short_tail(text: str, needle: str, count: int) -> None:
    freezer = BlockFreezer(min_chunk=100, max_tail=300)
    chunks, longest_tail = _stream(freezer, text, max_step=5)
    html = "".join(chunks)
    assert longest_tail <= 300 + 40  # the tail may carry a fence opener / table header
    assert html.count(needle) == count
    assert len(chunks) > 5


def test_long_code_fence_is_split_and_reopened() -> None:
    code = "```py\n" + "".join(f"x{i} = {i}\n" for i in range(400)) + "```\n\nafter\n"
    freezer = BlockFreezer(min_chunk=100, max_tail=300)
    chunks, longest_tail = _stream(freezer, code, max_step=5)
    html = "".join(chunks)
    assert longest_tail <= 340
    assert (
        html.count('<code class="language-py">') == html.count("<pre>") > 5
    )  # each piece is highlighted code
    for i in (0, 199, 399):
        assert html.count(f"x{i} = {i}\n") == 1
    assert html.endswith("<p>after</p>\n") and "```" not in html


def test_long_list_is_split_at_items_and_keeps_every_item() -> None:
    items = "".join(f"- item {i}\n" for i in range(200))
    _assert_short_tail(items, "<li>", 200)


def test_long_ordered_list_keeps_its_numbering() -> None:
    items = "".join(f"{i}. item\n" for i in range(1, 151))
    freezer = BlockFreezer(min_chunk=100, max_tail=300)
    chunks, _ = _stream(freezer, items, max_step=5)
    starts = [c for c in chunks if '<ol start="' in c]
    assert starts, "a continued ordered list must start at its own number"


def test_long_table_carries_its_header() -> None:
    table = "| n | sq |\n|---|---|\n" + "".join(f"| {i} | v{i} |\n" for i in range(150))
    freezer = BlockFreezer(min_chunk=100, max_tail=300)
    chunks, longest = _stream(freezer, table, max_step=5)
    html = "".join(chunks)
    assert html.count("<table>") == len(chunks) > 3  # every chunk is a real table
    assert html.count("<td>149</td>") == 1 and html.count("<td>0</td>") == 1
    assert longest < 360


def test_one_huge_paragraph_is_split_at_sentences() -> None:
    para = " ".join(f"Sentence number {i} is here." for i in range(400))
    freezer = BlockFreezer(min_chunk=100, max_tail=300)
    chunks, longest = _stream(freezer, para, max_step=5)
    assert longest <= 300
    html = "".join(chunks)
    for i in (0, 200, 399):
        assert html.count(f"Sentence number {i} is here.") == 1


def test_tail_html_is_cached_until_the_tail_changes() -> None:
    calls: list[str] = []

    def renderer(text: str) -> str:
        calls.append(text)
        return render_markdown(text)

    freezer = BlockFreezer(renderer=renderer)
    freezer.feed("hello")
    assert freezer.tail_html() == freezer.tail_html() == "<p>hello</p>\n"
    assert calls == ["hello"]
    freezer.feed(" world")
    assert freezer.tail_html() == "<p>hello world</p>\n"


# -- clock and formatting ----------------------------------------------------------------------------------


def test_coalescing_clock_allows_one_update_per_interval() -> None:
    now = [100.0]
    clock = CoalescingClock(0.06, clock=lambda: now[0])
    assert clock.due()
    clock.mark()
    now[0] += 0.03
    assert not clock.due() and clock.remaining() == pytest.approx(0.03)
    now[0] += 0.031
    assert clock.due()


def test_text_rate_reads_a_steady_stream_and_lets_a_burst_fade() -> None:
    rate = TextRate(tau=0.5)
    assert rate.observe(10.0, 0) == 0.0  # the first call only sets the origin
    total, now = 0, 10.0
    for step in (0.09, 0.3, 0.05, 0.3, 0.2) * 6:  # irregular calls, 3,000 characters a second
        now += step
        total += round(3_000 * step)
        rate.observe(now, total)
    assert rate.rate == pytest.approx(3_000, rel=0.02)  # not biased by how often it is called
    now += 0.001
    burst = rate.observe(now, total + 2_000)  # 2,000 characters at once
    assert burst == pytest.approx(3_000 + 2_000 / 0.5, rel=0.05)
    now += 1.5  # then silence: the burst fades
    assert rate.observe(now, total + 2_000) < 500


def test_adaptive_interval_keeps_the_base_at_reading_speed_and_grows_to_a_cap() -> None:
    def pace(rate: float) -> float:
        return adaptive_interval(rate, base=0.09, knee=3_200, longest=0.3)

    assert pace(0) == pace(800) == pace(3_200) == 0.09  # a model's pace: 10+ redraws a second
    assert pace(6_400) == pytest.approx(0.18)  # in proportion to the rate above the knee
    assert pace(10_800) == pace(1e9) == 0.3  # never slower than ~3 redraws a second
    rates = [100.0 * i for i in range(400)]
    assert all(pace(a) <= pace(b) for a, b in zip(rates, rates[1:], strict=False))


def test_format_seconds() -> None:
    assert format_seconds(0.2134) == "213 ms"
    assert format_seconds(2.51) == "2.5 s"
    assert format_seconds(125) == "2 min 5 s"
    assert format_seconds(None) == "–"


def test_format_usage_shows_cached_and_reasoning_tokens() -> None:
    usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 1500,
    }
    assert format_usage(usage) == "in 1,200 (1,024 cached) · out 300 (64 reasoning) · total 1,500"
    assert format_usage(None) == ""


def _result(**kw: object) -> SimpleNamespace:
    base = dict(
        text="Hello **world**",
        response_id="resp_123",
        status="completed",
        transport="ws",
        fallback_reason=None,
        reconnected=False,
        resent_transcript=False,
        usage={"input_tokens": 5, "output_tokens": 20, "total_tokens": 25},
        ttft=0.25,
        elapsed=1.25,
        error=None,
        model="gpt-test",
        incomplete_reason=None,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_footer_for_a_completed_turn() -> None:
    text = footer_text(_result())
    assert text.startswith("done · WS · ttft 250 ms · 1.2 s · 20 tok/s")
    assert text.endswith("resp_123")
    assert "not added" not in text


def test_footer_names_fallback_and_interruption() -> None:
    assert "SSE (fell back from WS)" in footer_text(_result(transport="sse", fallback_reason="handshake 426"))
    text = footer_text(_result(status="cancelled", usage=None))
    assert text.startswith("interrupted") and "not added to the conversation" in text
    assert footer_text(_result(status="incomplete", incomplete_reason="max_output_tokens")).startswith(
        "incomplete (max_output_tokens)"
    )


def test_final_bundle_has_markdown_plain_text_and_metadata() -> None:
    data, meta = final_bundle(_result())
    assert data["text/plain"] == "Hello **world**"
    assert data["text/markdown"].startswith("Hello **world**\n\n*done · WS")
    assert meta["ipy_responses_ws"] == {
        "response_id": "resp_123",
        "model": "gpt-test",
        "transport": "ws",
        "status": "completed",
        "fallback_reason": None,
    }


def test_final_bundle_of_a_failure_shows_the_error_in_words() -> None:
    err = RuntimeError("The server closed the connection (1011). Try again.")
    data, meta = final_bundle(_result(text="", status="failed", error=err, response_id=None))
    assert "**Error:** The server closed the connection (1011). Try again." in data["text/markdown"]
    assert data["text/plain"] == str(err)
    assert meta["ipy_responses_ws"]["status"] == "failed"


def test_a_finished_table_does_not_swallow_the_next_paragraph() -> None:
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n\n" + "word " * 800
    freezer = BlockFreezer(min_chunk=100, max_tail=300)
    chunks, _ = _stream(freezer, text, max_step=5)
    html = "".join(chunks)
    assert html.count("<table>") == 1 and html.count("<td>") == 2
    assert html.count("word") == 800


def test_split_request_cuts_a_paragraph_at_a_sentence_end_only() -> None:
    freezer = BlockFreezer(min_chunk=10**6, max_tail=10**6)
    freezer.feed("Intro.\n\nFirst sentence here. Second sentence is still runn")
    assert freezer.freeze() is None
    chunk = freezer.freeze(split=True)
    assert chunk == "<p>Intro.</p>\n<p>First sentence here.</p>\n"
    assert freezer.tail == "Second sentence is still runn"
    assert freezer.freeze(split=True) is None  # no sentence end yet: nothing to cut


def test_plan_finds_a_cut_after_what_a_view_already_shows() -> None:
    """A view that shows the first n characters of the tail in one widget asks for a cut at or after n, so
    the widget can stay as drawn; the cut is at a sentence end or a space, never inside a word."""
    freezer = BlockFreezer(min_chunk=1, max_tail=10**6)
    freezer.feed("Intro.\n\nFirst sentence here. " + "more words " * 80)
    shown = len("Intro.\n\nFirst sentence here. more words")
    assert freezer.plan(split=True) is not None
    pos, carry = freezer.plan(split=True, after=shown)  # type: ignore[misc]
    tail = freezer.tail
    assert pos >= shown and carry == "" and tail[pos - 1] == " "
    assert freezer.cut(pos, carry) == render_markdown(tail[:pos])
    assert freezer.tail == tail[pos:]  # nothing planned was cut until cut() was called


def test_plan_says_none_when_no_cut_is_late_enough() -> None:
    freezer = BlockFreezer(min_chunk=1, max_tail=10**6)
    freezer.feed("Short.\n\nOne sentence is being writ")
    assert freezer.plan(split=True, after=len(freezer.tail)) is None
    assert freezer.tail == "Short.\n\nOne sentence is being writ"


def test_plan_keeps_a_sentence_whole_while_it_is_short() -> None:
    """A paragraph streaming at model speed is cut between sentences, not mid-sentence (a cut shows as a
    paragraph break until the final bundle replaces the view)."""
    freezer = BlockFreezer(min_chunk=1, max_tail=10**6)
    freezer.feed("Intro.\n\nA first sentence ends here. And a second one is still being")
    shown = len(freezer.tail) - 10
    assert freezer.plan(split=True, after=shown) is None  # no sentence end after what is shown
    freezer.feed(" written. Third")
    pos, _ = freezer.plan(split=True, after=shown)  # type: ignore[misc]
    assert freezer.tail[:pos].endswith("still being written. ")


# -- the final bundle's Markdown is inert in a renderer that keeps raw HTML ---------------------------------

_TRUSTED = __import__("markdown_it").MarkdownIt("commonmark", {"html": True})
_PIECES = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    '<a href="javascript:alert(3)">a</a>',
    "[c](javascript:alert(4))",
    "![i](javascript:alert(5))",
    "[r]: javascript:alert(6)\n\n[r][]",
    "[e](&#106;avascript:alert(7))",
    "<details open ontoggle=alert(8)>",
    "`",
    "``",
    "\\`",
    "\n```\n",
    "\n    ",
    "\n> ",
    "\n- ",
    " text ",
    "\n\n",
    "<https://ok.example>",
]


class _Active(__import__("html.parser").parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "img", "iframe", "details", "svg", "style"):
            self.found.append(tag)
        for name, value in attrs:
            link = name in ("href", "src", "srcdoc", "action")
            if name.startswith("on") or (link and value and "javascript" in value.lower()):
                self.found.append(f"{tag} {name}={value}")


def _active(markdown: str) -> list[str]:
    parser = _Active()
    parser.feed(_TRUSTED.render(markdown))
    return parser.found


def test_safe_markdown_neutralizes_every_payload_in_random_documents() -> None:
    rnd = random.Random(7)
    assert _active("".join(_PIECES))  # the checker does see raw payloads
    for _ in range(400):
        doc = "".join(rnd.choice(_PIECES) for _ in range(rnd.randint(1, 12)))
        assert _active(safe_markdown(doc)) == [], doc


def test_safe_markdown_keeps_benign_answers_and_code_exact() -> None:
    benign = DOC * 2 + "Use `a < b` and [docs](https://example.com).\n\n```html\n<div>ok</div>\n```\n"
    assert render_markdown(safe_markdown(benign)) == render_markdown(benign)
    assert "<div>ok</div>" in safe_markdown(benign)  # code is not escaped


def test_safe_markdown_closes_a_fence_left_open_by_an_interrupt() -> None:
    text = safe_markdown("Look:\n\n```python\nx = 1")
    assert text.endswith("```\n")
    data, _ = final_bundle(_result(text="Look:\n\n```python\nx = 1", status="cancelled"))
    footer_html = render_markdown(data["text/markdown"])
    assert "<em>interrupted" in footer_html  # the footer is not swallowed by the code block


def test_final_bundle_markdown_is_inert_but_plain_text_is_the_answer() -> None:
    hostile = "Hi <img src=x onerror=alert(1)> [x](javascript:alert(2))"
    data, _ = final_bundle(_result(text=hostile))
    assert _active(data["text/markdown"]) == []
    assert data["text/plain"] == hostile
    assert "onerror=alert(1)" in _TRUSTED.render(data["text/markdown"])  # still visible, as text
