"""Re-running a cell forks its own turn (issue 13): the new turn continues from where that cell's previous turn
started, so the server's conversation holds only the active branch, the one the notebook shows.

Session-level checks against the emulator, whose answers list the conversation the server reconstructed
("Earlier messages"). The same from a real kernel with ``metadata.cellId``: tests/test_notebook_conversation.py.
"""

from __future__ import annotations

import functools

import pytest
from engine_helpers import new_session as _new_session
from engine_helpers import requests_received

from ipy_responses_ws.emulator import Emulator, Fault, reply_for

KEY = "sk-test-FAKE-rerun-forks-0123456789"
new_session = functools.partial(_new_session, key=KEY)


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


def _text(item: dict) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or () if isinstance(p, dict))


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("store", [True, False])
def test_a_rerun_cell_replaces_its_turn_and_drops_the_later_ones(emu, transport, store):
    with new_session(emu, transport=transport, store=store) as s:
        assert s.respond("alpha", cell="c1").ok
        assert s.respond("beta", cell="c2").ok
        assert s.respond("gamma", cell="c3").ok
        again = s.respond("alpha again", cell="c2")  # the user edited and re-ran the second cell
        assert again.ok, again.error
        assert again.forked_from == 2
        assert again.text == reply_for(["alpha", "alpha again"])  # not beta, not gamma
        # and the cell after it continues the active branch
        nxt = s.respond("delta", cell="c4")
        assert nxt.forked_from is None
        assert nxt.text == reply_for(["alpha", "alpha again", "delta"])
        chain = s.chain()
        assert chain.turns == 3
        assert [cell for cell, _ in chain.marks] == ["c1", "c2", "c4"]
        assert chain.forks == 1


def test_a_rerun_of_the_first_cell_starts_over(emu):
    with new_session(emu) as s:
        s.respond("one", cell="a")
        s.respond("two", cell="b")
        r = s.respond("one, reworded", cell="a")
        assert r.forked_from == 1
        assert r.text == reply_for(["one, reworded"])
        assert s.chain().previous_response_id == r.response_id


def test_the_latest_cell_rerun_twice_keeps_replacing_itself(emu):
    with new_session(emu) as s:
        s.respond("q", cell="x")
        first = s.respond("follow-up", cell="y")
        second = s.respond("follow-up, take 2", cell="y")
        third = s.respond("follow-up, take 3", cell="y")
        assert first.text == reply_for(["q", "follow-up"])
        assert second.text == reply_for(["q", "follow-up, take 2"])
        assert third.text == reply_for(["q", "follow-up, take 3"])


def test_store_false_fork_resends_the_transcript_up_to_the_parent(emu):
    with new_session(emu, transport="ws", store=False) as s:
        s.respond("first", cell="c1")
        s.respond("second", cell="c2")
        r = s.respond("second, again", cell="c2")
        assert r.ok and r.resent_transcript
        sent = requests_received(emu)[-1]
        assert "previous_response_id" not in sent
        texts = [str(it.get("content")) for it in sent["input"]]
        assert any("first" in t for t in texts) and not any("'second'" in t for t in texts)
        assert r.text == reply_for(["first", "second, again"])


def test_store_true_fork_chains_by_the_parents_id(emu):
    with new_session(emu, transport="ws", store=True) as s:
        one = s.respond("first", cell="c1")
        s.respond("second", cell="c2")
        r = s.respond("second, again", cell="c2")
        assert requests_received(emu)[-1]["previous_response_id"] == one.response_id
        assert not r.resent_transcript


def test_continue_appends_at_the_tail_even_from_a_rerun_cell(emu):
    with new_session(emu) as s:
        s.respond("one", cell="a")
        s.respond("two", cell="b")
        r = s.respond("one more", cell="a", tail=True)
        assert r.forked_from is None
        assert r.text == reply_for(["one", "two", "one more"])


def test_turns_without_a_cell_id_append_as_before(emu):
    with new_session(emu) as s:
        s.respond("one")
        s.respond("two")
        r = s.respond("one")
        assert r.forked_from is None
        assert r.text == reply_for(["one", "two", "one"])


def test_a_failed_rerun_leaves_the_conversation_as_it_was(emu):
    with new_session(emu, max_retries=0) as s:
        s.respond("one", cell="a")
        two = s.respond("two", cell="b")
        emu.add_fault(Fault("error", status=500))
        bad = s.respond("two, again", cell="b")
        assert not bad.ok
        assert s.chain().previous_response_id == two.response_id
        assert [c for c, _ in s.chain().marks] == ["a", "b"]
        good = s.respond("three", cell="c")
        assert good.text == reply_for(["one", "two", "three"])


def test_max_turns_keeps_only_the_last_turns_of_a_resent_transcript(emu):
    with new_session(emu, transport="sse", store=False, max_turns=2) as s:
        for prompt in ("one", "two", "three"):
            assert s.respond(prompt).ok
        r = s.respond("four")
        assert r.ok and r.resent_transcript and r.trimmed_turns == 1
        assert r.text == reply_for(["two", "three", "four"])  # "one" left out, said in trimmed_turns
        sent = [_text(it) for it in requests_received(emu)[-1]["input"]]
        assert "one" not in sent and sent[:2] == ["two", reply_for(["one", "two"])]


def test_max_turns_does_not_touch_a_turn_chained_by_id(emu):
    with new_session(emu, transport="ws", store=True, max_turns=1) as s:
        for prompt in ("one", "two", "three"):
            s.respond(prompt)
        r = s.respond("four")
        assert r.trimmed_turns == 0 and not r.resent_transcript
        assert r.text == reply_for(["one", "two", "three", "four"])


def test_history_names_the_cell_of_each_turn_on_the_active_branch(emu):
    with new_session(emu) as s:
        s.respond("one", cell="cell-a")
        s.respond("two", cell="cell-b")
        s.respond("no cell")
        s.respond("two, again", cell="cell-b")
        rows = s.chain().cell_history()
        assert [(c, r) for c, r, _ in rows] == [
            ("cell-a", "user"),
            ("cell-a", "assistant"),
            ("cell-b", "user"),
            ("cell-b", "assistant"),
        ]
        assert rows[2][2] == "two, again"
