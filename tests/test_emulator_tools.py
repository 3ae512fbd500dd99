"""The emulator's tool-using model, driven through the official openai SDK over WebSocket mode and SSE.

Multi-step function-call rollouts (one call per response, ``N times``, parallel, explicit arguments), the real
400 for a call without its output, the duplicated-context flag for re-sent calls, and hosted tool call items.
Every event is validated strictly against the SDK's class for its type (tests/emulator_fixtures.py).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import jsonschema
import openai
import pytest
from emulator_fixtures import FAKE_KEY, running_emulator, validate_event

from ipy_responses_ws.emulator import reply_for

TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}


def _fn(name: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    params = {"type": "object", "properties": properties, "required": required or list(properties)}
    return {"type": "function", "name": name, "description": f"The {name} tool", "parameters": params}


WEATHER = _fn("get_weather", {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}})
CONVERT = _fn(
    "convert_units",
    {"value": {"type": "number"}, "unit": {"type": "string", "enum": ["C", "F"]}, "note": {"type": "string"}},
    required=["value", "unit"],
)
NOTIFY = _fn(
    "notify",
    {
        "urgent": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}},
        "target": {"type": "object", "properties": {"channel": {"type": "string"}}, "required": ["channel"]},
    },
)
STEP = _fn("step", {"n": {"type": "integer"}})
TOOLS = [WEATHER, CONVERT, NOTIFY, STEP]
SCHEMAS = {t["name"]: t["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def emu():
    with running_emulator(api_key=FAKE_KEY) as server:
        yield server


@pytest.fixture
def client(emu):
    with openai.OpenAI(base_url=emu.base_url, api_key=FAKE_KEY, max_retries=0) as c:
        yield c


# -- a client's view: one response per call ----------------------------------------------------------------


class Conversation:
    """One client conversation over ``transport`` ("ws" on one socket, or "sse"); returns raw event dicts."""

    def __init__(self, client: openai.OpenAI, transport: str) -> None:
        self.client, self.transport = client, transport
        self.conn = client.responses.connect().__enter__() if transport == "ws" else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, **kw: Any) -> list[dict[str, Any]]:
        kw.setdefault("model", "gpt-5-mini")
        kw.setdefault("tools", TOOLS)
        events = []
        if self.conn is not None:
            self.conn.response.create(**kw)
            while True:
                payload = json.loads(self.conn.recv_bytes())
                validate_event(payload, transport="ws")
                events.append(payload)
                if payload["type"] in TERMINAL:
                    return events
        with self.client.responses.create(stream=True, **kw) as stream:
            for ev in stream:
                payload = ev.to_dict()
                validate_event(payload, transport="sse")
                events.append(payload)
        return events


def final(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "response.completed", events[-1]
    return events[-1]["response"]


def calls_in(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The function calls of a response, after checking their events look like the real API's (§2.5)."""
    calls = [it for it in final(events)["output"] if it["type"] == "function_call"]
    for index, call in enumerate(calls):
        assert re.fullmatch(r"fc_[0-9a-f]{48}", call["id"]) and re.fullmatch(
            r"call_[A-Za-z0-9]{24}", call["call_id"]
        )
        mine = [
            e for e in events if e.get("item_id") == call["id"] or e.get("item", {}).get("id") == call["id"]
        ]
        kinds = [e["type"] for e in mine]
        assert kinds[0] == "response.output_item.added" and mine[0]["item"]["status"] == "in_progress"
        assert kinds[-2:] == ["response.function_call_arguments.done", "response.output_item.done"]
        deltas = "".join(e["delta"] for e in mine if e["type"] == "response.function_call_arguments.delta")
        assert deltas == mine[-2]["arguments"] == call["arguments"] and call["status"] == "completed"
        assert mine[0]["output_index"] == index + (len(final(events)["output"]) - len(calls))
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])
    return calls


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def answer(calls: list[dict[str, Any]], outputs: list[str]) -> list[dict[str, Any]]:
    return [
        {"type": "function_call_output", "call_id": c["call_id"], "output": o}
        for c, o in zip(calls, outputs, strict=True)
    ]


def as_input(call: dict[str, Any]) -> dict[str, Any]:
    """A function_call output item as a stateless client sends it back."""
    return {k: call[k] for k in ("type", "call_id", "name", "arguments")}


# -- multi-step rollouts ------------------------------------------------------------------------------------

PROMPT = "Check get_weather first, then convert_units, and finally notify the team."
LINE = PROMPT[:60]
EXPECTED = [
    ("get_weather", {"city": LINE, "days": 1}),
    ("convert_units", {"value": 1.5, "unit": "C"}),
    ("notify", {"urgent": True, "tags": [LINE[:8]], "target": {"channel": LINE}}),
]
OUTPUTS = ["sunny, 21 °C", "69.8 °F", "sent to #ops"]


@pytest.mark.parametrize(("transport", "store"), [("ws", True), ("ws", False), ("sse", True)])
def test_three_tool_rollout_by_previous_response_id(client, transport, store):
    convo = Conversation(client, transport)
    try:
        events = convo.send(input=PROMPT, store=store)
        made = []
        for step, (name, args) in enumerate(EXPECTED):
            (call,) = calls_in(events)
            assert (call["name"], json.loads(call["arguments"])) == (name, args)
            assert text_of(events) == ""  # a calling step says nothing
            made.append(call)
            events = convo.send(
                input=answer([call], [OUTPUTS[step]]), previous_response_id=final(events)["id"], store=store
            )
    finally:
        convo.close()
    assert calls_in(events) == []
    text = text_of(events)
    assert text == reply_for(
        [PROMPT], tool_results=[(c["call_id"], o) for c, o in zip(made, OUTPUTS, strict=True)]
    )
    quoted = [text.index(f"returned `{o}`") for o in OUTPUTS]
    assert quoted == sorted(quoted)  # every output, in the order of the calls
    assert final(events)["output"][-1]["content"][0]["text"] == text


def test_full_resend_without_id_plans_the_same_steps(client):
    """A stateless client (store=false over HTTP) resending the transcript meets the same calls and answer."""
    convo = Conversation(client, "sse")
    transcript: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
    made = []
    for step, (name, args) in enumerate(EXPECTED):
        (call,) = calls_in(convo.send(input=transcript, store=False))
        assert (call["name"], json.loads(call["arguments"])) == (name, args)
        made.append(call)
        transcript += [as_input(call), *answer([call], [OUTPUTS[step]])]
    events = convo.send(input=transcript, store=False)
    assert text_of(events) == reply_for(
        [PROMPT], tool_results=[(c["call_id"], o) for c, o in zip(made, OUTPUTS, strict=True)]
    )


@pytest.mark.parametrize("phrase", ["Please call step 20 times.", "Run step ×20 and report.", "step x20"])
def test_n_times_gives_one_call_per_response_then_the_answer(client, emu, phrase):
    convo = Conversation(client, "ws")
    outputs, made = [], []
    try:
        events = convo.send(input=phrase)
        for n in range(1, 21):
            (call,) = calls_in(events)
            assert call["name"] == "step" and json.loads(call["arguments"]) == {
                "n": n
            }  # integer = step number
            made.append(call)
            outputs.append(f"step {n} done")
            events = convo.send(input=answer([call], outputs[-1:]), previous_response_id=final(events)["id"])
    finally:
        convo.close()
    assert calls_in(events) == []
    assert text_of(events) == reply_for(
        [phrase], tool_results=[(c["call_id"], o) for c, o in zip(made, outputs, strict=True)]
    )
    assert emu.connections[-1].requests[-1]["duplicated_context"] is False


def test_every_response_of_a_rollout_waits_the_ttft(client):
    prompt = "call step 2 times"
    waits, results = [], []
    with Conversation(client, "ws") as convo:
        kw: dict[str, Any] = {"input": prompt}
        for _ in range(3):
            started = time.monotonic()
            events = convo.send(metadata={"emulator_ttft": "0.2"}, **kw)
            waits.append(time.monotonic() - started)
            for call in calls_in(events):
                results.append((call["call_id"], "ok"))
                kw = {"input": answer([call], ["ok"]), "previous_response_id": final(events)["id"]}
    assert calls_in(events) == [] and text_of(events) == reply_for([prompt], tool_results=results)
    assert len(results) == 2 and all(w >= 0.2 for w in waits), waits


def test_in_parallel_puts_the_calls_in_one_response(client):
    prompt = "Use get_weather and convert_units in parallel."
    convo = Conversation(client, "ws")
    try:
        events = convo.send(input=prompt)
        calls = calls_in(events)
        assert [c["name"] for c in calls] == ["get_weather", "convert_units"]
        assert [json.loads(c["arguments"]) for c in calls] == [
            {"city": prompt, "days": 1},
            {"value": 1.5, "unit": "C"},
        ]
        done = convo.send(input=answer(calls, ["rain", "12 °C"]), previous_response_id=final(events)["id"])
    finally:
        convo.close()
    assert text_of(done) == reply_for(
        [prompt], tool_results=[(calls[0]["call_id"], "rain"), (calls[1]["call_id"], "12 °C")]
    )
    # parallel_tool_calls=false wins over the prompt: one call per response again
    serial = Conversation(client, "sse").send(input=prompt, parallel_tool_calls=False)
    assert [c["name"] for c in calls_in(serial)] == ["get_weather"]


def test_explicit_arguments_are_used_as_given(client):
    prompt = 'Compare get_weather(city="Paris", days=3) with get_weather(city=\'Rome\', days=2), then convert_units({"value": 21.5, "unit": "F"}).'
    convo = Conversation(client, "sse")
    events = convo.send(input=prompt)
    seen = []
    for output in ("p", "r", "c"):
        (call,) = calls_in(events)
        seen.append((call["name"], json.loads(call["arguments"])))
        events = convo.send(input=answer([call], [output]), previous_response_id=final(events)["id"])
    assert seen == [
        ("get_weather", {"city": "Paris", "days": 3}),
        ("get_weather", {"city": "Rome", "days": 2}),
        ("convert_units", {"value": 21.5, "unit": "F"}),
    ]
    assert calls_in(events) == [] and "returned `c`" in text_of(events)


# -- the real 400 for a call without its output ---------------------------------------------------------------


def no_output(call_id: str) -> str:
    return f"No tool output found for function call {call_id}."


def test_unanswered_call_by_id_is_the_real_400_over_http_and_ws(client):
    sse = Conversation(client, "sse")
    first = sse.send(input=PROMPT)
    (call,) = calls_in(first)
    with pytest.raises(openai.BadRequestError) as info:
        sse.send(input="never mind, what time is it?", previous_response_id=final(first)["id"])
    assert info.value.status_code == 400 and no_output(call["call_id"]) in str(info.value)
    assert info.value.body == {
        "message": no_output(call["call_id"]),
        "type": "invalid_request_error",
        "param": "input",
        "code": None,
    }
    ws = Conversation(client, "ws")
    try:
        events = ws.send(input="Use get_weather and convert_units at once.")
        calls = calls_in(events)
        # answering only one of two parallel calls is not enough
        (error,) = ws.send(input=answer(calls[:1], ["rain"]), previous_response_id=final(events)["id"])
        # the socket stays usable
        after = ws.send(input="hello again", tools=[])
    finally:
        ws.close()
    assert error == {
        "type": "error",
        "status": 400,
        "error": {
            "message": no_output(calls[1]["call_id"]),
            "type": "invalid_request_error",
            "param": "input",
            "code": None,
        },
    }
    assert text_of(after) == reply_for(["hello again"])


def test_full_resend_with_a_call_but_no_output_is_the_same_400(client):
    first = Conversation(client, "sse").send(input=PROMPT)
    (call,) = calls_in(first)
    transcript = [
        {"role": "user", "content": PROMPT},
        as_input(call),
        {"role": "user", "content": "and now?"},
    ]
    with pytest.raises(openai.BadRequestError) as info:
        Conversation(client, "sse").send(input=transcript, store=False)
    assert info.value.body["message"] == no_output(call["call_id"]) and info.value.param == "input"
    ws = Conversation(client, "ws")
    try:
        (error,) = ws.send(input=transcript, store=False)
        fixed = ws.send(input=[*transcript[:2], *answer([call], ["sunny"]), transcript[2]], store=False)
    finally:
        ws.close()
    assert error["status"] == 400 and error["error"]["message"] == no_output(call["call_id"])
    assert text_of(fixed) == reply_for([PROMPT, "and now?"], tool_results=[(call["call_id"], "sunny")])


# -- duplicated context -----------------------------------------------------------------------------------------


def test_resending_calls_with_previous_response_id_is_flagged(client, emu):
    convo = Conversation(client, "ws")
    try:
        first = convo.send(input=PROMPT)
        (c1,) = calls_in(first)
        second = convo.send(input=answer([c1], ["sunny"]), previous_response_id=final(first)["id"])
        (c2,) = calls_in(second)
        # livekit's bug: the whole tool history (calls and outputs) goes out again with the id
        resent = [as_input(c1), *answer([c1], ["sunny"]), as_input(c2), *answer([c2], ["69.8 °F"])]
        third = convo.send(input=resent, previous_response_id=final(second)["id"])
    finally:
        convo.close()
    (c3,) = calls_in(third)
    assert c3["name"] == "notify"  # the answer is unchanged: the rollout goes on
    requests = emu.connections[-1].requests
    assert [r["duplicated_context"] for r in requests] == [False, False, True]
    assert requests[-1]["duplicated_items"] == [c1["call_id"], c2["call_id"]]
    assert emu.duplicated_context[-1]["response_id"] == final(third)["id"]


# -- hosted tools -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_web_search_call_item_comes_before_the_answer(client, transport):
    prompt = "Search the web for the WebSocket mode guide."
    convo = Conversation(client, transport)
    try:
        events = convo.send(input=prompt, tools=[{"type": "web_search"}, WEATHER])
    finally:
        convo.close()
    search, message = final(events)["output"]
    assert search["type"] == "web_search_call" and search["status"] == "completed"
    assert search["action"] == {"type": "search", "query": prompt} and search["id"].startswith("ws_")
    kinds = [e["type"] for e in events if e.get("item_id") == search["id"]]
    assert kinds == [f"response.web_search_call.{k}" for k in ("in_progress", "searching", "completed")]
    assert text_of(events) == message["content"][0]["text"] == reply_for([prompt])


@pytest.mark.parametrize(
    ("tool", "prompt", "kind"),
    [
        (
            {"type": "file_search", "vector_store_ids": ["vs_1"]},
            "file_search for the design notes",
            "file_search_call",
        ),
        (
            {"type": "code_interpreter", "container": {"type": "auto"}},
            "run python to count these words",
            "code_interpreter_call",
        ),
        (
            {
                "type": "mcp",
                "server_label": "deepwiki",
                "server_url": "https://mcp.deepwiki.com/mcp",
                "require_approval": "never",
            },
            "ask deepwiki about aiohttp",
            "mcp_call",
        ),
    ],
)
def test_other_hosted_tools_emit_their_call_items(client, tool, prompt, kind):
    with Conversation(client, "ws") as convo:
        events = convo.send(input=prompt, tools=[tool])
    item, message = final(events)["output"]
    assert item["type"] == kind and item["status"] == "completed" and message["type"] == "message"
    mine = [e["type"] for e in events if e.get("item_id") == item["id"]]
    assert mine[0] == f"response.{kind}.in_progress" and mine[-1] == f"response.{kind}.completed"
    if kind == "code_interpreter_call":
        assert item["code"] and item["outputs"] == [{"type": "logs", "logs": "6\n"}]
    if kind == "mcp_call":
        assert item["server_label"] == "deepwiki" and json.loads(item["arguments"]) == {"query": prompt}
