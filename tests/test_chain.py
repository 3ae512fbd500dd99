"""The chain decides what each turn sends; only completed turns advance it; it never mixes history and an id."""

from __future__ import annotations

import pytest

from ipy_responses_ws.chain import Chain, output_text, output_to_input, user_message


def completed(rid, text, *, store=True, extra=()):
    return {
        "id": rid,
        "status": "completed",
        "store": store,
        "model": "m",
        "output": [
            *extra,
            {
                "id": "msg_" + rid,
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            },
        ],
    }


def run_turn(chain, prompt, rid, text, **plan_kw):
    items = [user_message(prompt)]
    plan = chain.plan(items, **plan_kw)
    chain.commit(plan, items, completed(rid, text, store=plan_kw["store"]), connection_id=plan_kw.get("conn"))
    return plan


def ws(store=True, same=True):
    return {"transport": "ws", "store": store, "same_connection": same}


def test_first_turn_then_by_id():
    c = Chain("a")
    p1 = run_turn(c, "hi", "resp_1", "Hello", **ws())
    assert p1.previous_response_id is None and p1.input == [user_message("hi")] and not p1.full_resend
    p2 = c.plan([user_message("more")], **ws())
    assert p2.previous_response_id == "resp_1" and p2.input == [user_message("more")]
    assert c.turns == 1 and c.history() == [("user", "hi"), ("assistant", "Hello")]


@pytest.mark.parametrize(
    ("transport", "same", "expect_full"),
    [("ws", True, False), ("ws", False, True), ("sse", False, True), ("sse", True, True)],
)
def test_store_false_matrix(transport, same, expect_full):
    c = Chain()
    run_turn(c, "q1", "resp_1", "a1", **ws(store=False))
    p = c.plan([user_message("q2")], transport=transport, store=False, same_connection=same)
    # never both history and an id
    assert (p.previous_response_id is None) == expect_full
    assert p.full_resend == expect_full
    if expect_full:
        assert p.input == [
            user_message("q1"),
            {"type": "message", "role": "assistant", "content": "a1"},
            user_message("q2"),
        ]
        assert "store=false" in p.reason
    else:
        assert p.input == [user_message("q2")]


def test_stored_parent_chains_by_id_on_any_transport():
    c = Chain()
    run_turn(c, "q1", "resp_1", "a1", transport="sse", store=True, same_connection=False)
    for transport, same in (("ws", False), ("sse", False)):
        p = c.plan([user_message("q2")], transport=transport, store=True, same_connection=same)
        assert p.previous_response_id == "resp_1" and not p.full_resend


def test_force_full_after_previous_response_not_found():
    c = Chain()
    run_turn(c, "q1", "resp_1", "a1", **ws())
    p = c.plan([user_message("q2")], **ws(), force_full=True)
    assert p.previous_response_id is None and p.full_resend and len(p.input) == 3


def test_only_completed_commits():
    c = Chain()
    items = [user_message("x")]
    plan = c.plan(items, **ws())
    with pytest.raises(ValueError):
        c.commit(plan, items, {"id": "resp_bad", "status": "incomplete", "output": []})
    assert c.previous_response_id is None and c.transcript == [] and c.turns == 0


def test_reset_and_sse_to_ws_under_store_false():
    c = Chain()
    run_turn(c, "q1", "resp_1", "a1", transport="sse", store=False, same_connection=False)
    p = c.plan([user_message("q2")], transport="ws", store=False, same_connection=False)
    assert p.full_resend and "SSE" in p.reason
    c.reset()
    assert c.plan([user_message("q")], **ws()).previous_response_id is None and c.turns == 0


def test_output_items_replayed_as_input():
    fc = {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "f",
        "arguments": "{}",
    }
    rs_plain = {"id": "rs_1", "type": "reasoning", "summary": []}
    rs_enc = {"id": "rs_2", "type": "reasoning", "summary": [], "encrypted_content": "gAAA"}
    assert output_to_input(fc, stored=False) == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "f",
        "arguments": "{}",
    }
    assert output_to_input(rs_plain, stored=False) is None
    assert output_to_input(rs_plain, stored=True) == {"type": "item_reference", "id": "rs_1"}
    assert output_to_input(rs_enc, stored=False) == {
        "type": "reasoning",
        "summary": [],
        "encrypted_content": "gAAA",
    }
    c = Chain()
    items = [user_message("q")]
    plan = c.plan(items, **ws(store=False))
    c.commit(plan, items, completed("resp_1", "a", store=False, extra=[rs_plain, fc]))
    assert [i["type"] for i in c.transcript] == ["message", "function_call", "message"]
    assert all("id" not in i for i in c.transcript)
    assert c.history()[1] == ("tool", "f({})")


# --- a function call left unanswered -------------------------------------------------------------------


def _call_response(rid, call_id):
    return {
        "id": rid,
        "status": "completed",
        "store": True,
        "output": [
            {"id": "rs_1", "type": "reasoning", "summary": []},
            {"id": "fc_1", "type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"},
        ],
    }


def _message(text):
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def test_chain_plan_leaves_unanswered_calls_out_and_chains_answered_ones():
    c = Chain()
    first = [user_message("use f")]
    c.commit(
        c.plan(first, transport="ws", store=True, same_connection=True), first, _call_response("r1", "c1")
    )
    assert c.pending_calls == ["c1"]

    answered = [{"type": "function_call_output", "call_id": "c1", "output": "42"}]
    by_id = c.plan(answered, transport="ws", store=True, same_connection=True)
    assert by_id.previous_response_id == "r1" and by_id.input == answered and not by_id.full_resend

    moved_on = [user_message("never mind")]
    plan = c.plan(moved_on, transport="ws", store=True, same_connection=True)
    assert plan.previous_response_id is None and plan.full_resend and "c1" in (plan.reason or "")
    types = [it["type"] for it in plan.input]
    assert "function_call" not in types and "item_reference" not in types  # the call and its reasoning
    assert plan.input[0] == first[0] and plan.input[-1] == moved_on[0]

    done = {"id": "r2", "status": "completed", "store": True, "output": [_message("ok")]}
    c.commit(plan, moved_on, done)
    assert c.pending_calls == []
    assert all(it.get("type") != "function_call" for it in c.transcript)  # no orphan left for later resends
    nxt = c.plan([user_message("and now")], transport="ws", store=True, same_connection=True)
    assert nxt.previous_response_id == "r2"


# --- several message items read as paragraphs, like the live view ----------------------------------------


def test_output_text_separates_message_items_like_the_live_view():
    assert output_text({"output": [_message("One."), _message("Two.")]}) == "One.\n\nTwo."
    assert output_text({"output": [_message("One.\n"), _message("Two.")]}) == "One.\n\nTwo."
    assert output_text({"output": [_message("One.\n\n"), _message("Two.")]}) == "One.\n\nTwo."
    assert output_text({"output": [_message(""), _message("Two.")]}) == "Two."
