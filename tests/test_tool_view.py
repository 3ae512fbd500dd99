"""How tool calls look (issue 12): rows in the live view, the status line and footer, the frozen bundle and the
terminal line. Plain ipywidgets in-process (no kernel), like tests/test_widgets.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import comm
import pytest
from ipywidgets.widgets import widget as widget_module
from markdown_it import MarkdownIt

from ipy_responses_ws.events import ServerEvent
from ipy_responses_ws.render import TurnState, final_bundle, footer_text
from ipy_responses_ws.results import TurnResult
from ipy_responses_ws.tool_view import OUTPUT_PREVIEW, hosted_call, row_html, tool_line
from ipy_responses_ws.toolbox import ToolCall
from ipy_responses_ws.widgets import ResponseView

HOSTILE = "<img src=x onerror=alert(1)>"
# JupyterLab renders the running session's Markdown outputs as trusted: raw HTML is kept (test_security_hostile).
TRUSTED_MD = MarkdownIt("commonmark", {"html": True})


class RecordingComm(comm.base_comm.BaseComm):
    log: list[tuple[str, int]] = []

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **k: Any
    ):
        RecordingComm.log.append((msg_type, len(json.dumps({"data": data}, default=str))))


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    RecordingComm.log = []
    monkeypatch.setattr(widget_module.comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    before = set(widget_module._instances)
    yield RecordingComm.log
    for model_id in set(widget_module._instances) - before:
        widget_module._instances[model_id].close()


class Tags(HTMLParser):
    """The tags and attributes a browser would build from some HTML."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def active(self) -> list[str]:
        bad = {"img", "script", "svg", "iframe", "object", "embed", "style", "a"}
        return [t for t, attrs in self.tags if t in bad or any(a.startswith("on") for a in attrs)]


def ev(etype: str, **data: Any) -> ServerEvent:
    return ServerEvent(etype, {"type": etype, **data})


def created(rid: str) -> ServerEvent:
    return ev("response.created", response={"id": rid, "status": "in_progress"})


def completed(rid: str, usage: dict[str, Any] | None = None) -> ServerEvent:
    return ev("response.completed", response={"id": rid, "status": "completed", "usage": usage})


def function_call_events(item_id: str, call_id: str, name: str, arguments: str) -> list[ServerEvent]:
    item = {"id": item_id, "type": "function_call", "name": name, "call_id": call_id, "arguments": ""}
    return [
        ev("response.output_item.added", item=item),
        ev("response.function_call_arguments.delta", item_id=item_id, delta=arguments[:5]),
        ev("response.function_call_arguments.delta", item_id=item_id, delta=arguments[5:]),
        ev("response.output_item.done", item={**item, "arguments": arguments, "status": "completed"}),
    ]


def message_events(item_id: str, text: str) -> list[ServerEvent]:
    return [
        ev("response.output_item.added", item={"id": item_id, "type": "message"}),
        ev("response.output_text.delta", item_id=item_id, delta=text),
    ]


def weather(status: str = "running", **kw: Any) -> ToolCall:
    base: dict[str, Any] = dict(
        name="get_weather",
        call_id="call_1",
        arguments={"city": "Paris"},
        arguments_text='{"city": "Paris"}',
        status=status,
    )
    base.update(kw)
    return ToolCall(**base)


def body_text(view: ResponseView) -> str:
    return "".join(child.value for page in view.body.children for child in page.children)


def shown(html: str) -> str:
    """What a reader sees of some HTML: its text, entities decoded."""
    return "".join(Tags(html).text)


# -- the terminal line -------------------------------------------------------------------------------------


def test_the_terminal_prints_one_readable_line_per_finished_call() -> None:
    ok = weather("ok", output="sunny, 21 °C", seconds=0.01)
    assert tool_line(ok) == '→ get_weather(city="Paris") 10 ms: sunny, 21 °C'
    failed = ToolCall("lookup", "c2", {"id": 3}, '{"id": 3}', output="KeyError: 3", error="KeyError: 3")
    failed.status = "error"
    assert tool_line(failed) == "→ lookup(id=3) failed: KeyError: 3"
    denied = weather("denied", error="denied by the user")
    assert tool_line(denied) == '→ get_weather(city="Paris") denied by the user'
    assert tool_line(weather("cancelled")) == '→ get_weather(city="Paris") cancelled'
    assert tool_line(ok, preview=False) == 'get_weather(city="Paris")'  # the approval question's words


def test_the_terminal_line_is_one_short_line_without_escape_sequences() -> None:
    noisy = weather("ok", output="line one\n\x1b[2J\x1b]0;owned\x07line two " + "x" * 500, seconds=2.5)
    line = tool_line(noisy)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert line.startswith('→ get_weather(city="Paris") 2.5 s: line one') and line.endswith("…")
    assert len(line) < 140
    bad_json = ToolCall("f", "c", {}, "{not json")
    bad_json.status = "ok"
    assert tool_line(bad_json).startswith("→ f({not json) ")  # the raw text when it was not valid JSON


# -- rows in the live view -------------------------------------------------------------------------------------


def test_a_call_row_appears_updates_and_then_is_left_alone(comms: list) -> None:
    view = ResponseView(transport="ws")
    view.handle(delta_event := ev("response.output_text.delta", delta="Let me check."))
    assert delta_event and view.calls is None  # no box before the first call
    view.tool_call(weather("running"))  # drawn at once, no flush needed
    children = list(view.widget.children)
    assert children.index(view.calls) < children.index(view.body)  # above the answer
    (row,) = view.calls.children
    assert "get_weather(city=&quot;Paris&quot;)" in row.value and "running…" in row.value
    assert "calling tools" in view.status.value and "1 call" in view.status.value

    view.tool_call(weather("ok", output="sunny, 21 °C", seconds=0.012))
    assert view.calls.children == (row,)  # updated in place, not a second row
    seen = shown(row.value)
    assert 'get_weather(city="Paris") · ok · 12 ms: sunny, 21 °C' in seen
    assert '{"city": "Paris"}' in seen  # the full arguments, inside the collapsed part
    tags = Tags(row.value).tags
    assert tags[0][0] == "details" and "open" not in tags[0][1]  # collapsed
    assert "irw-tool-ok" in (tags[0][1]["class"] or "")

    # A finished row is never written again (like a frozen answer block), whatever comes later.
    before, value = len(comms), row.value
    view.tool_call(weather("ok", output="changed", seconds=9.0))
    view.flush(force=True)
    assert row.value == value and not [m for m in comms[before:] if "changed" in str(m)]
    view.close()


def test_failed_denied_and_cancelled_rows_look_different(comms: list) -> None:
    view = ResponseView(transport="ws")
    view.tool_call(weather("ok", output="sunny", seconds=0.1))
    view.tool_call(
        ToolCall("lookup", "c2", {"id": 3}, status="error", error="KeyError: 3", output="KeyError: 3")
    )
    view.tool_call(ToolCall("rm", "c3", {"path": "/"}, status="denied", error="denied by the user"))
    view.tool_call(ToolCall("slow", "c4", status="cancelled", error="cancelled"))
    ok, err, denied, cancelled = (Tags(r.value).tags[0][1]["class"] for r in view.calls.children)
    assert "irw-tool-ok" in ok
    assert all("irw-tool-error" in c for c in (err, denied, cancelled))
    rows = [shown(r.value) for r in view.calls.children]
    assert "lookup(id=3) · failed: KeyError: 3" in rows[1]
    assert 'rm(path="/") · denied: denied by the user' in rows[2]
    assert "#b91c1c" in view.calls.children[1].value  # red
    assert (
        "3 calls" not in view.status.value
        and "4 calls · 1 failed · 1 denied · 1 cancelled" in view.status.value
    )
    view.close()


def test_a_call_awaiting_approval_says_so(comms: list) -> None:
    view = ResponseView(transport="ws")
    view.awaiting_approval(weather("pending"))
    assert "awaiting approval" in view.calls.value
    assert "awaiting approval" in view.status.value
    view.tool_call(weather("running"))
    assert "awaiting approval" not in view.calls.value and "calling tools" in view.status.value
    view.close()


def test_streamed_function_calls_show_before_the_loop_reports_them(comms: list) -> None:
    view = ResponseView(transport="sse")
    for item in function_call_events("fc_1", "call_1", "get_weather", '{"city": "Paris"}'):
        view.handle(item)
    view.flush(force=True)
    (row,) = view.calls.children
    assert 'get_weather(city="Paris") · requested' in shown(row.value)
    view.tool_call(weather("running"))  # the same call_id: the same row
    assert view.calls.children == (row,) and "running…" in row.value
    view.close()


def test_a_two_step_turn_stays_live_until_finish(comms: list) -> None:
    view = ResponseView(transport="ws")
    for item in [created("resp_1"), *message_events("msg_1", "Let me check.")]:
        view.handle(item)
    for item in function_call_events("fc_1", "call_1", "get_weather", '{"city": "Paris"}'):
        view.handle(item)
    view.handle(completed("resp_1", {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}))
    view.flush(force=True)
    assert not view.finished and "calling tools" in view.status.value  # not "done": the turn goes on
    assert "Interrupt" in view.status.value

    view.tool_call(weather("running", step=1))
    view.tool_call(weather("ok", output="sunny, 21 °C", seconds=0.01, step=1))
    view.step(2)
    assert "waiting" in view.status.value and "step 2 · 1 call" in view.status.value
    for item in [created("resp_2"), *message_events("msg_2", "It is sunny in Paris.")]:
        view.handle(item)
    view.handle(completed("resp_2", {"input_tokens": 80, "output_tokens": 8, "total_tokens": 88}))
    view.flush(force=True)
    assert not view.finished
    assert "<p>Let me check.</p>" in body_text(view) and "<p>It is sunny in Paris.</p>" in body_text(view)
    assert "in 130 · out 18 · total 148" in view.status.value  # both steps' usage
    assert "resp_2" in view.status.value

    call = weather("ok", output="sunny, 21 °C", seconds=0.01, step=1)
    view.finish(
        TurnResult(
            text="Let me check.\n\nIt is sunny in Paris.",
            status="completed",
            transport="ws",
            response_id="resp_2",
            tool_calls=[call],
            steps=2,
        )
    )
    assert view.finished and "done" in view.status.value and "step 2 · 1 call" in view.status.value
    view.close()


def test_a_next_response_without_step_still_counts_as_a_step() -> None:
    state = TurnState(transport="ws")
    for item in [created("resp_1"), *function_call_events("fc_1", "call_1", "f", "{}"), completed("resp_1")]:
        state.apply(item)
    assert state.state == "calling tools" and state.ended_at is None
    state.apply(created("resp_2"))  # the loop did not call step(2) first
    assert state.steps == 2 and state.state == "waiting"
    state.step(2)  # and when it does, afterwards, nothing starts over twice
    assert state.steps == 2
    state.apply(completed("resp_2"))
    assert state.state == "done"  # a response without calls ends as always
    assert state.status_line().startswith("WS · done · step 2")


def test_status_line_and_footer_count_calls_and_steps() -> None:
    state = TurnState(transport="ws")
    calls = [
        weather("ok", output="x"),
        ToolCall("g", "c2", status="error", error="E"),
        ToolCall("h", "c3", status="ok"),
    ]
    for call in calls:
        state.tool_call(call)
    state.step(2)
    assert "step 2 · 3 calls · 1 failed" in state.status_line()
    result = TurnResult(text="done", status="completed", transport="ws", tool_calls=calls, steps=2)
    assert "3 calls in 2 steps · 1 failed" in footer_text(result)
    assert "call" not in footer_text(TurnResult(text="plain", status="completed", transport="ws"))


# -- server-side (hosted) tool calls ------------------------------------------------------------------------------


def test_hosted_tool_calls_get_readable_rows(comms: list) -> None:
    view = ResponseView(transport="ws")
    search = {"id": "ws_1", "type": "web_search_call", "status": "in_progress"}
    view.handle(ev("response.output_item.added", item=search))
    view.flush(force=True)
    assert "web search · running…" in shown(view.calls.value)
    done = {**search, "status": "completed", "action": {"type": "search", "query": "weather Paris"}}
    view.handle(ev("response.output_item.done", item=done))
    code = "\n".join(f"print({i})" for i in range(12))
    items = [
        {"id": "ci_1", "type": "code_interpreter_call", "status": "completed", "code": code, "outputs": []},
        {
            "id": "mcp_1",
            "type": "mcp_call",
            "server_label": "deepwiki",
            "name": "ask",
            "arguments": '{"q": "ws"}',
        },
        {
            "id": "ig_1",
            "type": "image_generation_call",
            "status": "completed",
            "result": "iVBORw0KGgo" * 1000,
        },
        {"id": "fs_1", "type": "file_search_call", "status": "completed", "queries": ["refund policy"]},
    ]
    for item in items:
        view.handle(ev("response.output_item.added", item=item))
        view.handle(ev("response.output_item.done", item=item))
    view.flush(force=True)
    rows = [shown(r.value) for r in view.calls.children]
    assert rows[0].startswith("🌐 web search: “weather Paris” · done")
    assert rows[1].startswith("🐍 ran code (12 lines) · done") and "print(11)" in rows[1]
    assert rows[2].startswith('🔌 MCP deepwiki.ask(q="ws") · done')
    assert rows[3].startswith("🛠 generated an image · done") and "iVBOR" not in view.calls.value
    assert rows[4].startswith("🔎 file search: “refund policy” · done")
    assert "call" not in view.state.status_line().split(" · ")[2]  # hosted calls are not the kernel's calls
    _, metadata = view.final_bundle(TurnResult(text="ok", status="completed", transport="ws"))
    data, _ = view.final_bundle(TurnResult(text="ok", status="completed", transport="ws"))
    assert "web search: “weather Paris”" in shown(TRUSTED_MD.render(data["text/markdown"]))
    assert "tool_calls" not in metadata["ipy_responses_ws"]
    view.close()


def test_a_failed_mcp_call_is_a_failed_row() -> None:
    item = {
        "id": "m",
        "type": "mcp_call",
        "server_label": "s",
        "name": "t",
        "arguments": "{}",
        "error": "boom",
    }
    call = hosted_call(item, done=True)
    assert call.status == "error" and "irw-tool-error" in row_html(call) and "boom" in row_html(call)


# -- the frozen bundle -------------------------------------------------------------------------------------------


def tool_result(**kw: Any) -> TurnResult:
    calls = [
        weather("ok", output="sunny, 21 °C\n\nhumidity 40 %", seconds=0.01, step=1),
        ToolCall("lookup", "call_2", {"id": 3}, '{"id": 3}', status="error", error="KeyError: 3", step=2),
    ]
    base: dict[str, Any] = dict(
        text="It is **sunny**.",
        status="completed",
        transport="ws",
        response_id="resp_2",
        tool_calls=calls,
        steps=2,
    )
    base.update(kw)
    return TurnResult(**base)


def test_the_frozen_bundle_lists_calls_above_the_answer_with_details_collapsed() -> None:
    data, metadata = final_bundle(tool_result())
    md = data["text/markdown"]
    assert md.index("get_weather") < md.index("lookup") < md.index("It is **sunny**.")
    html = TRUSTED_MD.render(md)
    tags = Tags(html).tags
    details = [attrs for tag, attrs in tags if tag == "details"]
    assert len(details) == 2 and all(attrs == {} for attrs in details)  # collapsed, no attributes at all
    seen = shown(html)
    assert 'get_weather(city="Paris") · ok · 10 ms: sunny, 21 °C humidity 40 %' in seen
    assert "lookup(id=3) · failed: KeyError: 3" in seen
    assert "sunny, 21 °C\n\nhumidity 40 %" in seen  # the output keeps its lines inside <pre>
    assert "<strong>sunny</strong>" in html  # the answer is still Markdown
    assert data["text/plain"] == "It is **sunny**."  # the answer alone
    assert "2 calls in 2 steps · 1 failed" in md
    info = metadata["ipy_responses_ws"]
    assert info["steps"] == 2
    assert info["tool_calls"] == [
        {"name": "get_weather", "call_id": "call_1", "status": "ok", "seconds": 0.01, "step": 1},
        {"name": "lookup", "call_id": "call_2", "status": "error", "seconds": 0.0, "step": 2},
    ]  # no arguments, no outputs


def test_a_long_output_is_cut_in_the_bundle() -> None:
    call = weather("ok", output="a" * 10_000, seconds=1.0)
    md = final_bundle(tool_result(tool_calls=[call], steps=1))[0]["text/markdown"]
    assert "a" * OUTPUT_PREVIEW in md and "a" * (OUTPUT_PREVIEW + 1) not in md
    assert "8,000 more characters" in md


def test_hostile_arguments_and_outputs_are_inert_live_and_frozen(comms: list) -> None:
    tricky = f"{HOSTILE}\n\n</pre></details>[x](javascript:alert(2)) <script>alert(3)</script>\n\n*em*"
    call = ToolCall(HOSTILE, "call_h", {"q": HOSTILE}, json.dumps({"q": HOSTILE}), output=tricky, status="ok")
    view = ResponseView(transport="ws")
    view.tool_call(call)
    live = view.calls.value
    assert Tags(live).active() == [] and HOSTILE in shown(live)  # shown as text, never a tag
    md = final_bundle(tool_result(tool_calls=[call], steps=1))[0]["text/markdown"]
    html = TRUSTED_MD.render(md)
    assert Tags(html).active() == [] and "<em>" not in html.split("<p>It is")[0]  # no Markdown inside the row
    assert HOSTILE in shown(html) and "javascript:alert(2)" in shown(html)
    view.close()


def test_an_api_key_in_an_output_is_not_shown() -> None:
    call = weather("ok", output="Authorization: Bearer sk-secret-0123456789abcdef", seconds=0.1)
    assert "sk-secret" not in tool_line(call) and "sk-secret" not in row_html(call)
    assert "sk-secret" not in final_bundle(tool_result(tool_calls=[call]))[0]["text/markdown"]
