"""What the model is told about a user's function (``%%respond --tools``) and about ``--tool`` hosted tools."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import socket
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypedDict

import pytest

from ipy_responses_ws.errors import ConfigError
from ipy_responses_ws.tool_schema import ToolSchemaError, describe, function_tool, hosted_tool


class Units(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


@dataclasses.dataclass
class Place:
    """Where to look."""

    lat: float
    lon: float
    label: str = ""


class Filters(TypedDict, total=False):
    min_temp: int
    tags: list[str]


def get_weather(
    city: str,
    days: int = 3,
    units: Literal["c", "f"] = "c",
    include_wind: bool = False,
    note: Annotated[str | None, "Free text for the forecaster"] = None,
) -> str:
    """Get the weather forecast for a city.

    Uses the national service; slow on Mondays.

    Args:
        city: The city's name, e.g. "Paris".
        days: How many days ahead, 1 to 7.
        units (str): Celsius or Fahrenheit.

    Returns:
        The forecast as text.
    """
    return city


def test_a_realistic_function_gets_exactly_this_tool() -> None:
    assert function_tool(get_weather) == {
        "type": "function",
        "name": "get_weather",
        "description": "Get the weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": 'The city\'s name, e.g. "Paris".'},
                "days": {"type": "integer", "description": "How many days ahead, 1 to 7.", "default": 3},
                "units": {
                    "type": "string",
                    "enum": ["c", "f"],
                    "description": "Celsius or Fahrenheit.",
                    "default": "c",
                },
                "include_wind": {"type": "boolean", "default": False},
                "note": {
                    "type": ["string", "null"],
                    "description": "Free text for the forecaster",
                    "default": None,
                },
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": False,
    }


PLACE_SCHEMA = {
    "type": "object",
    "properties": {
        "lat": {"type": "number"},
        "lon": {"type": "number"},
        "label": {"type": "string", "default": ""},
    },
    "required": ["lat", "lon"],
    "description": "Where to look.",
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("annotation", "schema"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (Any, {}),
        (Literal[1, 2, 3], {"type": "integer", "enum": [1, 2, 3]}),
        (Literal["a", 1], {"enum": ["a", 1]}),
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (list, {"type": "array"}),
        (set[int], {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
        (tuple[float, ...], {"type": "array", "items": {"type": "number"}}),
        (
            tuple[float, float],
            {"type": "array", "prefixItems": [{"type": "number"}] * 2, "minItems": 2, "maxItems": 2},
        ),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (dict, {"type": "object"}),
        (int | None, {"type": ["integer", "null"]}),
        (Optional[str], {"type": ["string", "null"]}),  # noqa: UP045 (the spelling users still write)
        (list[int] | None, {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]}),
        (Annotated[int, "How many"], {"type": "integer", "description": "How many"}),
        (Units, {"type": "string", "enum": ["c", "f"]}),
        (Place, PLACE_SCHEMA),
        (list[Place], {"type": "array", "items": PLACE_SCHEMA}),
        (
            Filters,
            {
                "type": "object",
                "properties": {
                    "min_temp": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": [],
                "additionalProperties": False,
            },
        ),
        (dt.datetime, {"type": "string", "format": "date-time"}),
        (dt.date, {"type": "string", "format": "date"}),
        (Path, {"type": "string", "description": "a file path"}),
    ],
    ids=repr,
)
def test_each_supported_type_has_its_json_schema(annotation: Any, schema: dict[str, Any]) -> None:
    def tool(x): ...

    tool.__annotations__ = {"x": annotation}
    assert function_tool(tool)["parameters"]["properties"]["x"] == schema


def test_unannotated_parameters_take_any_value_or_the_type_of_their_default() -> None:
    def tool(anything, count=5, label="x", nothing=None):
        """Do it."""

    props = function_tool(tool)["parameters"]["properties"]
    assert props == {
        "anything": {},
        "count": {"type": "integer", "default": 5},
        "label": {"type": "string", "default": "x"},
        "nothing": {"default": None},
    }


def test_an_enum_default_is_sent_as_its_value() -> None:
    def tool(units: Units = Units.FAHRENHEIT) -> None: ...

    assert function_tool(tool)["parameters"]["properties"]["units"]["default"] == "f"


@dataclasses.dataclass
class Node:
    value: int
    child: Node | None = None


class Opaque:
    pass


def _takes_socket(conn: socket.socket) -> None: ...
def _takes_opaque(city: str, thing: Opaque) -> None: ...
def _takes_nested_opaque(places: list[dict[str, Opaque]]) -> None: ...
def _takes_int_keys(counts: dict[int, str]) -> None: ...
def _takes_a_tree(root: Node) -> None: ...


@pytest.mark.parametrize(
    ("fn", "param", "what"),
    [
        (_takes_socket, "conn", "socket"),
        (_takes_opaque, "thing", "Opaque"),
        (_takes_nested_opaque, "places[]", "Opaque"),
        (_takes_int_keys, "counts", "keys are always strings"),
        (_takes_a_tree, "root.child", "refers to itself"),
    ],
)
def test_a_type_with_no_json_form_names_the_function_and_the_parameter(
    fn: Any, param: str, what: str
) -> None:
    with pytest.raises(ToolSchemaError) as info:
        function_tool(fn)
    text = str(info.value)
    assert fn.__name__ in text and repr(param) in text and what in text
    assert "Give it a type hint like str, int, list[str] or a dataclass." in text
    assert isinstance(info.value, ConfigError)


def test_star_args_kwargs_and_positional_only_parameters_are_refused_by_name() -> None:
    def many(*cities: str) -> None: ...
    def options(**opts: str) -> None: ...
    def positional(city: str, /) -> None: ...
    def positional_with_default(city: str, units: str = "c", /) -> None: ...

    with pytest.raises(ToolSchemaError, match=r"many as a tool: \*cities"):
        function_tool(many)
    with pytest.raises(ToolSchemaError, match=r"options as a tool: \*\*opts"):
        function_tool(options)
    with pytest.raises(ToolSchemaError, match=r"'city' is positional-only"):
        function_tool(positional)
    with pytest.raises(ToolSchemaError, match=r"'city' is positional-only"):
        function_tool(positional_with_default)


def test_a_forward_reference_to_an_undefined_type_says_to_define_it() -> None:
    def tool(x: NotDefinedAnywhere) -> None: ...  # noqa: F821

    with pytest.raises(ToolSchemaError, match=r"type hints of tool.*Define the types"):
        function_tool(tool)


def test_tool_names_must_fit_the_api() -> None:
    with pytest.raises(ToolSchemaError, match=r"'<lambda>' cannot be a tool name.*pass name="):
        function_tool(lambda city: city)
    assert function_tool(lambda city: city, name="echo")["name"] == "echo"
    with pytest.raises(ToolSchemaError, match=r"'bad name' cannot be a tool name"):
        function_tool(get_weather, name="bad name")
    with pytest.raises(ToolSchemaError, match="1 to 64"):
        function_tool(get_weather, name="x" * 65)


def test_bound_methods_skip_self_and_partials_drop_what_they_fix() -> None:
    class Service:
        def lookup(self, key: str, limit: int = 10) -> str:
            """Look a key up."""
            return key

    tool = function_tool(Service().lookup)
    assert tool["name"] == "lookup" and tool["description"] == "Look a key up."
    assert list(tool["parameters"]["properties"]) == ["key", "limit"]

    def search(index: str, query: str, limit: int = 5) -> str:
        """Search an index."""
        return query

    tool = function_tool(functools.partial(search, "docs", limit=3))
    assert tool["name"] == "search"
    assert tool["parameters"]["properties"] == {
        "query": {"type": "string"},
        "limit": {"type": "integer", "default": 3},
    }
    assert tool["parameters"]["required"] == ["query"]


def test_numpy_and_sphinx_docstrings_describe_the_parameters() -> None:
    def numpy_style(city: str, days: int = 1) -> str:
        """Forecast for a city.

        Parameters
        ----------
        city : str
            The city's name,
            in English.
        days : int
            Days ahead.

        Returns
        -------
        str
        """
        return city

    def sphinx_style(city: str) -> str:
        """Forecast for a city.

        :param city: The city's name.
        :returns: the forecast
        """
        return city

    numpy = function_tool(numpy_style)
    assert numpy["description"] == "Forecast for a city."
    assert numpy["parameters"]["properties"]["city"]["description"] == "The city's name, in English."
    assert numpy["parameters"]["properties"]["days"]["description"] == "Days ahead."
    sphinx = function_tool(sphinx_style)
    assert sphinx["parameters"]["properties"]["city"] == {"type": "string", "description": "The city's name."}


def test_a_function_without_a_docstring_has_an_empty_description() -> None:
    def ping() -> str:
        return "pong"

    assert function_tool(ping)["description"] == ""
    assert function_tool(ping)["parameters"] == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_a_pydantic_model_uses_its_own_schema_with_defs_at_the_root() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Address(pydantic.BaseModel):
        street: str
        zip_code: str

    class Customer(pydantic.BaseModel):
        name: str
        address: Address

    def register(customer: Customer) -> str:
        """Register a customer."""
        return customer.name

    register.__annotations__ = {"customer": Customer}  # a local class: the string hint cannot be resolved
    params = function_tool(register)["parameters"]
    prop = params["properties"]["customer"]
    assert prop["properties"]["address"] == {"$ref": "#/$defs/Address"}
    assert params["$defs"]["Address"]["required"] == ["street", "zip_code"]
    assert "$defs" not in prop  # refs point at the document root, so the defs must live there


# --- hosted tools ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "tool"),
    [
        ("web_search", {"type": "web_search"}),
        ("file_search:vs_1,vs_2", {"type": "file_search", "vector_store_ids": ["vs_1", "vs_2"]}),
        ("code_interpreter", {"type": "code_interpreter", "container": {"type": "auto"}}),
        ("image_generation", {"type": "image_generation"}),
        (
            "https://mcp.deepwiki.com/mcp",
            {
                "type": "mcp",
                "server_label": "deepwiki_com",
                "server_url": "https://mcp.deepwiki.com/mcp",
                "require_approval": "never",
            },
        ),
        (
            "mcp:docs=https://example.com/mcp",
            {
                "type": "mcp",
                "server_label": "docs",
                "server_url": "https://example.com/mcp",
                "require_approval": "never",
            },
        ),
    ],
)
def test_hosted_tool_specs(spec: str, tool: dict[str, Any]) -> None:
    assert hosted_tool(spec) == tool


def test_file_search_without_vector_stores_says_how_to_name_them() -> None:
    with pytest.raises(ToolSchemaError, match=r"--tool file_search:vs_abc123,vs_def456"):
        hosted_tool("file_search")


def test_an_unknown_hosted_tool_lists_what_is_accepted() -> None:
    with pytest.raises(ToolSchemaError) as info:
        hosted_tool("web_serch")
    text = str(info.value)
    assert "'web_serch'" in text
    for accepted in ("web_search", "file_search:", "code_interpreter", "image_generation", "https://"):
        assert accepted in text


def test_an_mcp_url_keeps_its_query_but_errors_never_show_its_secrets() -> None:
    url = "https://tools.example.com/mcp?tenant=7&api_key=sk-mcp-0123456789"
    assert hosted_tool(f"mcp:{url}")["server_url"] == url  # mcp: without a label, though the URL holds "="
    with pytest.raises(ToolSchemaError) as info:
        hosted_tool("mcp:bad label=https://u:hunter2secret@h.example/mcp?key=sk-mcp-0123456789")
    assert "hunter2secret" not in str(info.value) and "sk-mcp-0123456789" not in str(info.value)
    with pytest.raises(ToolSchemaError) as info:
        hosted_tool("ftp://user:pw-secret-99@files.example/x?token=tok-secret-42")
    assert "pw-secret-99" not in str(info.value) and "tok-secret-42" not in str(info.value)


# --- describe --------------------------------------------------------------------------------------------


def test_describe_lists_what_the_model_sees() -> None:
    tools = [
        function_tool(get_weather),
        hosted_tool("web_search"),
        hosted_tool("file_search:vs_1"),
        hosted_tool("mcp:docs=https://example.com/mcp?key=sk-secret-value-1"),
    ]
    text = describe(tools)
    assert text.splitlines()[:4] == [
        "get_weather(city, days, units, include_wind, note)",
        "    Get the weather forecast for a city.",
        '    - city (string, required): The city\'s name, e.g. "Paris".',
        "    - days (integer, optional, default 3): How many days ahead, 1 to 7.",
    ]
    assert '    - units ("c" | "f", optional, default "c"): Celsius or Fahrenheit.' in text
    assert "web_search (hosted)" in text
    assert "file_search (hosted; vector stores vs_1)" in text
    assert "docs (MCP server https://example.com/mcp?key=***)" in text
    assert "sk-secret-value-1" not in text
    assert describe([]) == "No tools."
