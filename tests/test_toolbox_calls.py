"""Running the model's function calls in the kernel: what the model gets back when they go right or wrong."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import json
from typing import Any

import pytest

from ipy_responses_ws.tool_schema import ToolSchemaError
from ipy_responses_ws.toolbox import ToolBox, ToolCall, format_output


class Units(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


@dataclasses.dataclass
class Place:
    lat: float
    lon: float


SEEN: list[Any] = []


def get_weather(city: str, days: int = 1, units: Units = Units.CELSIUS) -> str:
    """Weather for a city."""
    SEEN.append(units)
    return f"{city}: sunny for {days} day(s), in {units.value}"


def distance(a: Place, b: Place, via: list[Place] | None = None) -> dict[str, Any]:
    """Distance between two places."""
    SEEN.append((a, b, via))
    return {"km": abs(a.lat - b.lat) * 111, "via": len(via or [])}


def call(name: str, arguments: Any, call_id: str = "call_1") -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": text}


@pytest.fixture
def box() -> ToolBox:
    SEEN.clear()
    return ToolBox([get_weather, distance], hosted=["web_search"])


def test_a_toolbox_offers_function_and_hosted_tools(box: ToolBox) -> None:
    assert box.names == ["get_weather", "distance"]
    assert [t.get("name", t["type"]) for t in box.schemas] == ["get_weather", "distance", "web_search"]
    assert "get_weather" in box and "web_search" not in box and "print" not in box
    assert len(box) == 3


def test_from_namespace_names_what_is_missing_or_not_a_function() -> None:
    namespace = {"get_weather": get_weather, "distance": distance, "city": "Paris"}
    box = ToolBox.from_namespace("get_weather, distance", namespace)
    assert box.names == ["get_weather", "distance"]
    with pytest.raises(ToolSchemaError, match=r"No function called 'get_wether'.*def get_wether"):
        ToolBox.from_namespace(["get_wether"], namespace)
    with pytest.raises(ToolSchemaError, match=r"'city' is a str, not a function"):
        ToolBox.from_namespace("get_weather,city", namespace)


def test_a_good_call_runs_and_the_model_gets_the_string(box: ToolBox) -> None:
    prepared = box.prepare(call("get_weather", {"city": "Paris", "days": 2, "units": "f"}), step=2)
    assert (prepared.status, prepared.step, prepared.arguments["city"]) == ("pending", 2, "Paris")
    done = box.run(prepared)
    assert done.status == "ok" and done.error is None
    assert done.output == "Paris: sunny for 2 day(s), in f"
    assert SEEN == [Units.FAHRENHEIT]  # the enum member, not the string
    assert done.seconds >= 0
    again = box.prepare(call("get_weather", {"city": "Oslo"}))
    again.status = "running"  # the tool loop shows a call as running before it runs it
    assert box.run(again).output == "Oslo: sunny for 1 day(s), in c"
    denied = box.prepare(call("get_weather", {"city": "Rome"})).deny()
    assert box.run(denied).status == "denied" and SEEN[1:] == [Units.CELSIUS]  # a denied call never runs
    assert done.output_item() == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": "Paris: sunny for 2 day(s), in f",
    }


def test_dataclass_arguments_arrive_as_dataclass_instances(box: ToolBox) -> None:
    args = {"a": {"lat": 48, "lon": 2.3}, "b": {"lat": 45.7, "lon": 4.8}, "via": [{"lat": 47, "lon": 3}]}
    done = box.run(box.prepare(call("distance", args)))
    assert done.status == "ok", done.output
    a, b, via = SEEN[0]
    assert a == Place(48.0, 2.3) and isinstance(a.lat, float) and b == Place(45.7, 4.8)
    assert via == [Place(47.0, 3.0)]
    assert json.loads(done.output)["via"] == 1


@pytest.mark.parametrize(
    ("name", "arguments", "output"),
    [
        ("get_weather", {"days": 2}, "Error: invalid arguments for get_weather: 'city' is required"),
        (
            "get_weather",
            {"city": "Paris", "country": "FR"},
            "Error: invalid arguments for get_weather: 'country' is not a known argument (known: city, days, units)",
        ),
        (
            "get_weather",
            {"city": "Paris", "days": "two"},
            "Error: invalid arguments for get_weather: 'days' must be an integer, not a string",
        ),
        (
            "get_weather",
            {"city": "Paris", "days": True},
            "Error: invalid arguments for get_weather: 'days' must be an integer, not a boolean",
        ),
        (
            "get_weather",
            {"city": "Paris", "units": "kelvin"},
            'Error: invalid arguments for get_weather: \'units\' must be one of "c", "f"',
        ),
        (
            "distance",
            {"a": {"lat": 1, "lon": 2}, "b": {"lat": 1}},
            "Error: invalid arguments for distance: 'b.lon' is required",
        ),
        (
            "distance",
            {"a": {"lat": 1, "lon": 2}, "b": {"lat": 1, "lon": 2}, "via": [{"lat": "north", "lon": 2}]},
            "Error: invalid arguments for distance: 'via[0].lat' must be a number, not a string",
        ),
        (
            "distance",
            {"a": {"lat": 1, "lon": 2, "alt": 3}, "b": {"lat": 1, "lon": 2}},
            "Error: invalid arguments for distance: 'a.alt' is not a known field (known: lat, lon)",
        ),
        (
            "get_weather",
            "[1, 2]",
            "Error: invalid arguments for get_weather: they must be a JSON object, not a list",
        ),
        (
            "get_forecast",
            {"city": "Paris"},
            "Error: there is no tool called 'get_forecast' (tools: get_weather, distance)",
        ),
    ],
)
def test_bad_arguments_tell_the_model_what_to_fix(
    box: ToolBox, name: str, arguments: Any, output: str
) -> None:
    prepared = box.prepare(call(name, arguments))
    assert prepared.status == "error"
    assert prepared.output == output
    assert (prepared.error or "").startswith(("invalid arguments: ", "unknown tool "))
    assert box.run(prepared) is prepared and not SEEN  # never run


def test_invalid_json_is_an_error_the_model_can_read(box: ToolBox) -> None:
    prepared = box.prepare(call("get_weather", '{"city": "Par'))
    assert prepared.status == "error" and prepared.arguments == {}
    assert prepared.arguments_text == '{"city": "Par'
    assert prepared.output.startswith("Error: invalid arguments for get_weather: not valid JSON (")


def test_empty_arguments_text_means_no_arguments() -> None:
    def now() -> str:
        return "noon"

    box = ToolBox([now])
    assert box.run(box.prepare(call("now", ""))).output == "noon"


def test_an_exception_in_a_tool_is_sent_back_as_an_error() -> None:
    def fails(city: str) -> str:
        raise ValueError(f"no station near {city}")

    box = ToolBox([fails])
    done = box.run(box.prepare(call("fails", {"city": "Atlantis"})))
    assert done.status == "error"
    assert done.error == "ValueError: no station near Atlantis"
    assert done.output == "Error: ValueError: no station near Atlantis"


def test_a_secret_in_an_exception_never_reaches_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-test-5f2b8c1d9e7a4b3c"
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def leaky(url: str) -> str:
        import os

        raise RuntimeError(f"request to {url} failed with key {os.environ['OPENAI_API_KEY']}")

    box = ToolBox([leaky])
    done = box.run(box.prepare(call("leaky", {"url": "https://gw.example/v1?api_key=gw-secret-123456"})))
    assert done.status == "error" and done.output.startswith("Error: RuntimeError: request to")
    assert key not in done.output and key not in (done.error or "")
    assert "gw-secret-123456" not in done.output
    assert "[REDACTED]" in done.output


def test_keyboard_interrupt_is_left_to_the_caller() -> None:
    def slow() -> str:
        raise KeyboardInterrupt

    box = ToolBox([slow])
    prepared = box.prepare(call("slow", {}))
    with pytest.raises(KeyboardInterrupt):
        box.run(prepared)


@pytest.mark.parametrize(
    ("result", "output"),
    [
        ("plain text", "plain text"),
        (None, "None"),
        ({"temp": 21.5, "ok": True}, '{"temp": 21.5, "ok": true}'),
        ([1, "a"], '[1, "a"]'),
        (42, "42"),
        (Place(1.0, 2.0), '{"lat": 1.0, "lon": 2.0}'),
        ({"when": Units.CELSIUS}, '{"when": "Units.CELSIUS"}'),
        ({1, 2}, "{1, 2}"),
    ],
    ids=repr,
)
def test_outputs_are_text_the_model_can_read(result: Any, output: str) -> None:
    assert format_output(result) == output


def test_long_outputs_are_cut_with_a_note() -> None:
    def dump() -> str:
        return "x" * 150

    box = ToolBox([dump], output_limit=100)
    done = box.run(box.prepare(call("dump", {})))
    assert done.output == "x" * 100 + "\n[output truncated: 50 of 150 characters cut]"
    assert len(format_output("y" * 25_000)) < 20_100  # the default limit is 20,000


def test_a_pydantic_argument_arrives_as_the_model_instance() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Order(pydantic.BaseModel):
        item: str
        quantity: int = 1

    received: list[Any] = []

    def place_order(order: Order) -> str:
        received.append(order)
        return f"{order.quantity} x {order.item}"

    place_order.__annotations__ = {"order": Order, "return": str}
    box = ToolBox([place_order])
    done = box.run(box.prepare(call("place_order", {"order": {"item": "tea", "quantity": 3}})))
    assert done.output == "3 x tea" and received == [Order(item="tea", quantity=3)]
    bad = box.prepare(call("place_order", {"order": {"quantity": 3}}))
    assert bad.output == "Error: invalid arguments for place_order: 'order.item' is required"


def test_an_async_tool_runs_with_or_without_a_loop_running_in_its_thread() -> None:
    """A kernel cell runs inside ipykernel's loop: an ``async def`` tool must still run there."""

    async def fetch(city: str) -> str:
        await asyncio.sleep(0.01)
        return f"fetched {city}"

    box = ToolBox([fetch])
    assert box.run(box.prepare(call("fetch", {"city": "Oslo"}))).output == "fetched Oslo"

    async def inside_a_loop() -> ToolCall:
        return box.run(box.prepare(call("fetch", {"city": "Rome"})))

    done = asyncio.run(inside_a_loop())
    assert done.status == "ok" and done.output == "fetched Rome"


def test_cancelled_and_denied_calls_tell_the_model_why() -> None:
    cancelled = ToolCall(name="get_weather", call_id="c1").finish_cancelled()
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled by the user")
    assert cancelled.output == "Error: the call was cancelled by the user."
    denied = ToolCall(name="get_weather", call_id="c2").deny()
    assert (denied.status, denied.error) == ("denied", "denied by the user")
    assert denied.output_item()["output"] == "Error: the call was denied by the user."


def test_two_tools_with_one_name_are_refused() -> None:
    with pytest.raises(ToolSchemaError, match="Two tools are called 'get_weather'"):
        ToolBox([get_weather, functools.partial(get_weather, days=2)])
