"""Saving a conversation and loading it back: the JSON document, the Markdown transcript, the clear errors for
bad files, what a loaded chain sends next, and no key in any export.

The pure tests build chains by hand (``Chain.plan`` + ``Chain.commit``); the last two run real turns against
the emulator, so the export is of a chain made the way a notebook makes it, and the loaded conversation really
goes on in a new session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FAST_TIMEOUTS

from ipy_responses_ws import export
from ipy_responses_ws.chain import Chain, user_message
from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.errors import ConfigError
from ipy_responses_ws.export import ConversationFormatError, from_json, load_into, to_json, to_markdown
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-export-0123456789abcdef"


def completed(rid: str, text: str, *, store: bool, calls: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "id": rid,
        "status": "completed",
        "store": store,
        "model": "gpt-5-2025-08-07",
        "output": [
            {
                "id": "rs_" + rid,
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "thinking"}],
            },
            *calls,
            {
                "id": "msg_" + rid,
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        ],
    }


def conversation(*, store: bool) -> Chain:
    """Two completed turns over one WebSocket: 'capital of France?' then 'and Italy?'."""
    chain = Chain("geo")
    for n, (prompt, answer) in enumerate([("Capital of France?", "Paris."), ("And Italy?", "Rome.")], 1):
        items = [user_message(prompt)]
        plan = chain.plan(items, transport="ws", store=store, same_connection=True)
        chain.commit(plan, items, completed(f"resp_{n}", answer, store=store), connection_id="conn-1")
    return chain


NEXT = [user_message("And Spain?")]


def test_json_document_shape() -> None:
    chain = conversation(store=True)
    doc = to_json(chain, meta={"notebook": "geo.ipynb"})
    assert doc["format"] == "ipy_responses_ws.conversation" and doc["version"] == 1
    assert doc["exported_at"].endswith("Z")
    assert (doc["chain"], doc["previous_response_id"], doc["store"], doc["transport"], doc["turns"]) == (
        "geo",
        "resp_2",
        True,
        "ws",
        2,
    )
    assert doc["model"] == "gpt-5-2025-08-07"
    assert doc["transcript"] == chain.transcript and doc["transcript"] is not chain.transcript
    assert doc["pending_calls"] == [] and doc["meta"] == {"notebook": "geo.ipynb"}
    json.dumps(doc)  # plain JSON all through


def test_round_trip_store_true_chains_by_id() -> None:
    loaded = from_json(json.loads(json.dumps(to_json(conversation(store=True)))))
    assert loaded.name == "geo" and loaded.turns == 2 and loaded.connection_id is None
    for transport in ("ws", "sse"):
        plan = loaded.plan(NEXT, transport=transport, store=True, same_connection=False)
        assert plan.previous_response_id == "resp_2"
        assert plan.input == NEXT and not plan.full_resend


def test_round_trip_store_false_resends_the_whole_transcript() -> None:
    original = conversation(store=False)
    loaded = from_json(json.loads(json.dumps(to_json(original))))
    assert (
        loaded.connection_id is None
        and loaded.previous_response_id == "resp_2"
        and loaded.last_store is False
    )
    for transport in ("ws", "sse"):
        plan = loaded.plan(NEXT, transport=transport, store=False, same_connection=False)
        assert plan.previous_response_id is None and plan.full_resend
        assert plan.input == [*original.transcript, *NEXT]
        texts = [it.get("content") for it in plan.input if it.get("role") == "assistant"]
        assert texts == ["Paris.", "Rome."]


def test_transcript_without_an_id_is_resent_not_chained() -> None:
    doc = to_json(conversation(store=True))
    doc["previous_response_id"] = None
    loaded = from_json(doc)
    # same_connection is False: no socket caches the placeholder id (the turn compares the socket's cached id)
    plan = loaded.plan(NEXT, transport="ws", store=True, same_connection=False)
    assert (
        plan.previous_response_id is None
        and plan.full_resend
        and len(plan.input) == len(doc["transcript"]) + 1
    )


def test_load_into_replaces_a_running_conversation() -> None:
    chain = conversation(store=True)
    epoch = chain.epoch
    doc = to_json(conversation(store=False))
    doc["pending_calls"] = ["call_9"]
    assert load_into(chain, doc) is chain
    assert chain.epoch > epoch  # a turn still running on the old conversation cannot commit into this one
    assert chain.connection_id is None and chain.last_store is False and chain.pending_calls == ["call_9"]


def test_owed_tool_outputs_and_cells_survive_the_round_trip() -> None:
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"}
    chain = conversation(store=True)
    before = chain.save()
    items = [user_message("Population of Rome?")]
    plan = chain.plan(items, transport="ws", store=True, same_connection=True)
    chain.commit(plan, items, completed("resp_3", "Let me look.", store=True, calls=(call,)))
    chain.mark("cell-7", before)
    output = {"type": "function_call_output", "call_id": "call_1", "output": "2.7 million"}
    chain.owe([output])  # the tool ran, but its turn stopped before sending the output

    doc = to_json(chain)
    assert doc["pending_calls"] == ["call_1"] and doc["carry"] == [output]
    assert doc["cells"] == [{"cell_id": "cell-7", "turn": 3}]
    loaded = from_json(json.loads(json.dumps(doc)))
    assert loaded.pending_calls == ["call_1"] and loaded.owed(NEXT) == [output]
    assert loaded.marks == []  # no cell history: re-running a cell after a load continues, it does not fork
    # what the next turn sends: the owed output first, chained by id (the calls are answered)
    plan = loaded.plan([*loaded.owed(NEXT), *NEXT], transport="sse", store=True, same_connection=False)
    assert plan.previous_response_id == "resp_3" and plan.input == [output, *NEXT]
    md = to_markdown(loaded)
    assert "### Tool output (to send with the next turn)" in md and "2.7 million" in md
    assert "Waiting for tool outputs" not in md


def test_markdown_reads_as_a_transcript() -> None:
    call = {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "lookup",
        "arguments": '{"city": "Rome"}',
    }
    chain = conversation(store=True)
    items = [user_message("Population of Rome? ```code``` inside")]
    plan = chain.plan(items, transport="ws", store=True, same_connection=True)
    chain.commit(plan, items, completed("resp_3", "Let me look.", store=True, calls=(call,)))
    md = to_markdown(chain)
    assert md.startswith("# Conversation `geo`")
    assert "`resp_3`" in md and "`gpt-5-2025-08-07`" in md
    assert md.count("## User") == 3 and md.count("## Assistant") == 3
    for text in ("Capital of France?", "Paris.", "And Italy?", "Rome.", "Let me look."):
        assert text in md
    assert "### Tool call: `lookup`" in md and '```json\n{\n  "city": "Rome"\n}\n```' in md
    assert "Waiting for tool outputs: `call_1`" in md
    assert md.index("Capital of France?") < md.index("Paris.") < md.index("And Italy?")


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"format": "something.else"}, "format", "not an ipy_responses_ws conversation"),
        ({"version": 2}, "version", "newer ipy_responses_ws"),
        ({"version": "one"}, "version", "not a version number"),
        ({"transcript": None}, "transcript", "list of input items"),
        ({"transcript": [{"text": "hi"}]}, "transcript[0]", "neither 'type' nor 'role'"),
        ({"store": "yes"}, "store", "not bool"),
        ({"pending_calls": [1]}, "pending_calls", "call ids"),
        ({"carry": [{"type": "message"}]}, "carry", "function_call_output items"),
    ],
)
def test_bad_documents_give_clear_errors(change: dict[str, Any], field: str, words: str) -> None:
    doc = {**to_json(conversation(store=True)), **change}
    with pytest.raises(ConversationFormatError) as info:
        from_json(doc)
    assert isinstance(info.value, ConfigError)
    assert info.value.field == field and words in str(info.value)


def test_missing_transcript_and_not_a_document() -> None:
    doc = to_json(conversation(store=True))
    del doc["transcript"]
    with pytest.raises(ConversationFormatError, match="no 'transcript'"):
        from_json(doc)
    with pytest.raises(ConversationFormatError, match="JSON object"):
        from_json([1, 2])


def test_newer_version_says_to_upgrade() -> None:
    with pytest.raises(ConversationFormatError, match="pip install -U ipy_responses_ws"):
        from_json({**to_json(conversation(store=True)), "version": 7})


def test_files_by_suffix(tmp_path: Path) -> None:
    chain = conversation(store=True)
    written = export.write(tmp_path / "sub" / "geo.json", chain)
    assert written.exists() and json.loads(written.read_text(encoding="utf-8"))["format"] == export.FORMAT
    assert from_json(export.read(written)).previous_response_id == "resp_2"
    md = export.write(tmp_path / "geo.md", chain)
    assert "## Assistant" in md.read_text(encoding="utf-8")
    with pytest.raises(ConversationFormatError, match=r"'\.txt'.*'\.json'.*'\.md'"):
        export.write(tmp_path / "geo.txt", chain)
    assert not (tmp_path / "geo.txt").exists()
    with pytest.raises(ConversationFormatError, match="cannot be loaded back"):
        export.read(md)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ', encoding="utf-8")
    with pytest.raises(ConversationFormatError, match="not valid JSON"):
        export.read(broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken.json",
        "geo.md",
        "sub",
    ]  # no temp files left


# --- with real turns ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


@pytest.fixture
def key_in_env(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url)


@pytest.mark.usefixtures("key_in_env")
@pytest.mark.parametrize("store", [True, False])
def test_exports_hold_no_key_and_the_loaded_conversation_goes_on(
    emu: Emulator, tmp_path: Path, store: bool
) -> None:
    first = ResponsesSession(model="gpt-test", store=store, **FAST_TIMEOUTS)
    try:
        assert first.respond("one").status == "completed"
        last = first.respond("two")
        assert last.text == reply_for(["one", "two"])
        paths = [
            export.write(tmp_path / "c.json", first.chain()),
            export.write(tmp_path / "c.md", first.chain()),
        ]
    finally:
        first.close()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert KEY not in text and KEY[-12:] not in text and "Bearer" not in text
        assert emu.base_url not in text  # no settings at all
    assert json.loads(paths[0].read_text(encoding="utf-8"))["transcript"][-1]["content"] == last.text
    assert last.text in paths[1].read_text(encoding="utf-8")

    second = ResponsesSession(model="gpt-test", store=store, **FAST_TIMEOUTS)
    try:
        load_into(second.chain(), export.read(tmp_path / "c.json"))
        since = len(emu.connections)
        r = second.respond("three")
        # The emulator's answer depends on every user message it was given: the whole conversation went on.
        assert r.status == "completed" and r.text == reply_for(["one", "two", "three"])
        frame = emu.connections[since].frames[-1]
        if store:
            assert frame["previous_response_id"] == last.response_id and len(frame["input"]) == 1
        else:
            assert "previous_response_id" not in frame and r.resent_transcript
    finally:
        second.close()
