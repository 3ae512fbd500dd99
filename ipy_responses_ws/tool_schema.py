"""What the model is told about a tool: function tool schemas, hosted tool specs, and a plain-text listing.

Pure core: no I/O, no Jupyter. :func:`function_tool` turns a Python callable into a Responses API function tool
(the flat shape, ``{"type": "function", "name", "description", "parameters", "strict"}``, not Chat
Completions' ``{"function": {...}}``): the description is the docstring's first paragraph, the parameters a
JSON schema built from the signature and the type hints. :func:`hosted_tool` reads a ``--tool`` value
(``web_search``, ``file_search:vs_1``, an MCP server URL …). :func:`describe` prints what the model would see.

Supported parameter types: ``str``, ``int``, ``float``, ``bool``, ``Any``, ``Literal[...]``, ``Enum``
subclasses, ``list[X]`` / ``tuple`` / ``set[X]``, ``dict[str, X]``, ``X | None``, ``Annotated[X, "what it
is"]``, dataclasses, ``TypedDict``, pydantic models (their own ``model_json_schema()``; pydantic is never
imported here, a model class can only exist if its user imported it), ``datetime`` / ``date`` and ``Path``
(strings). A parameter without a hint accepts any JSON value, unless its default says the type (``n=3`` →
integer). Anything else (``*args``, a socket, an arbitrary class) is a :class:`ToolSchemaError` naming the
function and the parameter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, NoReturn
from urllib.parse import urlsplit

from .errors import ConfigError
from .redact import redact_url, register_secret, secret_query_values

__all__ = [
    "ToolSchemaError",
    "NAME_RE",
    "HOSTED_SPECS",
    "function_tool",
    "hosted_tool",
    "describe",
    "parameter_types",
    "tool_name",
]

#: What the Responses API accepts as a function name.
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: The ``--tool`` values :func:`hosted_tool` understands (an MCP server is given by its URL).
HOSTED_SPECS = (
    "web_search",
    "file_search:VECTOR_STORE_ID[,ID...]",
    "code_interpreter",
    "image_generation",
    "https://MCP-SERVER-URL",
    "mcp:LABEL=https://MCP-SERVER-URL",
)
_HINT = "Give it a type hint like str, int, list[str] or a dataclass."
_SIMPLE: dict[type, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}
_UNION_ORIGINS = (typing.Union, types.UnionType)
_ARRAYS = (list, tuple, set, frozenset, Sequence, Iterable)  # typing.List etc. have these as origins


class ToolSchemaError(ConfigError):
    """A callable cannot be offered as a tool, or a ``--tool`` value is not understood."""


# --- callables -------------------------------------------------------------------------------------------


def _base(fn: Callable[..., Any]) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def tool_name(fn: Callable[..., Any]) -> str:
    """The name a callable gets as a tool: its ``__name__`` (a partial's function, an instance's class)."""
    base = _base(fn)
    return str(getattr(base, "__name__", type(base).__name__))


def _check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ToolSchemaError(
            f"{name!r} cannot be a tool name: the API accepts 1 to 64 letters, digits, '_' or '-'.",
            hint="Define the tool with a def and a plain name (a lambda is called '<lambda>'), or pass name=.",
        )
    return name


def parameter_types(fn: Callable[..., Any]) -> dict[str, Any]:
    """The resolved type hints of *fn* (``Annotated`` kept), by parameter name; ``{}`` when there are none.

    Raises :class:`ToolSchemaError` when a hint names a type that does not exist (a forward reference to a
    class not defined yet).
    """
    base = _base(fn)
    target = getattr(base, "__func__", base)
    if not (inspect.isfunction(target) or inspect.isbuiltin(target) or isinstance(target, type)):
        target = inspect.getattr_static(type(target), "__call__", target)  # a callable instance: its __call__
    elif isinstance(target, type):
        target = target.__init__
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except (NameError, AttributeError) as exc:
        raise ToolSchemaError(
            f"Cannot read the type hints of {tool_name(fn)}: {exc}.",
            hint="Define the types it names before the function (or import them), then try again.",
        ) from exc
    except TypeError:
        return {}
    hints.pop("return", None)
    return hints


# --- docstrings ------------------------------------------------------------------------------------------

_GOOGLE_HEAD = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$")
_SECTION_HEAD = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
_GOOGLE_ITEM = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NUMPY_ITEM = re.compile(r"^(\w+)\s*(?::\s*(.*))?$")
_SPHINX_ITEM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(first paragraph as one line, {parameter: description}) from a Google, NumPy or Sphinx docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for i, line in enumerate(lines):
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        text = line.strip()
        if not text or text.startswith(":") or _SECTION_HEAD.match(text) or set(nxt) == {"-"}:
            break
        summary.append(text)
    params: dict[str, str] = {}
    current: str | None = None
    mode, item_indent = "", -1  # mode: "google" | "numpy" | "sphinx"
    for i, line in enumerate(lines):
        text, indent = line.strip(), len(line) - len(line.lstrip())
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if m := _SPHINX_ITEM.match(text):
            current, mode = m.group(1), "sphinx"
            params[current] = m.group(2).strip()
        elif _GOOGLE_HEAD.match(text) or (text in ("Parameters", "Other Parameters") and set(nxt) == {"-"}):
            current, mode, item_indent = None, "google" if text.endswith(":") else "numpy", -1
        elif not text or set(text) == {"-"}:
            continue
        elif mode == "sphinx":
            current = None if text.startswith(":") else current
            if current:
                params[current] = f"{params[current]} {text}"
        elif mode in ("google", "numpy"):
            item_indent = indent if item_indent < 0 else item_indent
            if indent < item_indent or (mode == "numpy" and set(nxt) == {"-"}):
                current, mode = None, ""  # the next section
            elif indent == item_indent:
                m = (_GOOGLE_ITEM if mode == "google" else _NUMPY_ITEM).match(text)
                current = m.group(1).lstrip("*") if m else None
                if m and current:
                    params[current] = (m.group(3) if mode == "google" else "") or ""
            elif current:
                params[current] = f"{params[current]} {text}".strip()
    return " ".join(summary), {k: v.strip() for k, v in params.items() if v.strip()}


# --- types -> JSON schema --------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def _json_value(value: Any) -> tuple[bool, Any]:
    """(True, its JSON form) for a default that JSON can carry; (False, None) otherwise."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple | frozenset | set):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False, None
    return True, value


def _is_pydantic(tp: Any) -> bool:
    # Never imports pydantic: a model class can only exist once its user has imported it.
    pyd = sys.modules.get("pydantic")
    return pyd is not None and isinstance(tp, type) and issubclass(tp, pyd.BaseModel)


class _Builder:
    """Builds one tool's parameter schema; pydantic's ``$defs`` are hoisted to the root their refs point to."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.defs: dict[str, Any] = {}
        self.stack: list[Any] = []

    def fail(self, path: str, why: str) -> NoReturn:
        raise ToolSchemaError(f"Cannot offer {self.tool} as a tool: parameter {path!r} {why}.", hint=_HINT)

    def schema(self, tp: Any, path: str) -> dict[str, Any]:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            out = self.schema(args[0], path)
            notes = [a for a in args[1:] if isinstance(a, str)]
            return {**out, "description": notes[0]} if notes else out
        if tp is typing.Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp in _SIMPLE:
            return {"type": _SIMPLE[tp]}
        if origin is typing.Literal:
            kinds = {_SIMPLE.get(type(a)) for a in args}
            lit = {"enum": list(args)}
            return {"type": kinds.pop(), **lit} if len(kinds) == 1 and None not in kinds else lit
        if origin in _UNION_ORIGINS:
            parts = [self.schema(a, path) for a in args]
            if all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
                return {"type": [p["type"] for p in parts]}
            return {"anyOf": parts}
        if tp in _ARRAYS or origin in _ARRAYS:
            return self._array(tp, origin, args, path)
        if tp in (dict, Mapping) or origin in (dict, Mapping):
            if args and args[0] is not str:
                self.fail(
                    path, f"is {_type_name(tp)}, but JSON object keys are always strings (use dict[str, ...])"
                )
            return {
                "type": "object",
                **({"additionalProperties": self.schema(args[1], path)} if args else {}),
            }
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            values = [m.value for m in tp]
            kinds = {_SIMPLE.get(type(v)) for v in values}
            return (
                {"type": kinds.pop(), "enum": values}
                if len(kinds) == 1 and None not in kinds
                else {"enum": values}
            )
        if isinstance(tp, type) and issubclass(tp, dt.datetime):
            return {"type": "string", "format": "date-time"}
        if isinstance(tp, type) and issubclass(tp, dt.date):
            return {"type": "string", "format": "date"}
        if isinstance(tp, type) and issubclass(tp, PurePath):
            return {"type": "string", "description": "a file path"}
        if tp in self.stack:
            self.fail(path, f"refers to itself through {_type_name(tp)}, which a tool schema cannot describe")
        if dataclasses.is_dataclass(tp) or typing.is_typeddict(tp):
            return self._object(tp, path)
        if _is_pydantic(tp):
            schema = dict(tp.model_json_schema())
            self.defs.update(schema.pop("$defs", {}))
            return schema
        self.fail(path, f"has the type {_type_name(tp)}, which has no JSON form")

    def _array(self, tp: Any, origin: Any, args: tuple[Any, ...], path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array"}
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = [self.schema(a, f"{path}[{i}]") for i, a in enumerate(args)]
            return {**out, "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        if args:
            out["items"] = self.schema(args[0], f"{path}[]")
        if tp in (set, frozenset) or origin in (set, frozenset):
            out["uniqueItems"] = True
        return out

    def _object(self, cls: type, path: str) -> dict[str, Any]:
        self.stack.append(cls)
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except NameError as exc:
            self.fail(path, f"uses {cls.__name__}, whose hints name an unknown type ({exc})")
        props: dict[str, Any] = {}
        required: list[str] = []
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                if not f.init:
                    continue
                props[f.name] = self.schema(hints.get(f.name, typing.Any), f"{path}.{f.name}")
                if f.default is not dataclasses.MISSING:
                    ok, value = _json_value(f.default)
                    if ok:
                        props[f.name]["default"] = value
                elif f.default_factory is dataclasses.MISSING:
                    required.append(f.name)
        else:
            for key, hint in hints.items():
                props[key] = self.schema(hint, f"{path}.{key}")
            required = [k for k in hints if k in getattr(cls, "__required_keys__", hints)]
        self.stack.pop()
        out: dict[str, Any] = {"type": "object", "properties": props, "required": required}
        doc = cls.__doc__ or ""
        if doc and not doc.startswith(f"{cls.__name__}("):  # not the dataclass's generated signature
            out["description"] = _parse_docstring(doc)[0]
        return {**out, "additionalProperties": False}


def function_tool(fn: Callable[..., Any], *, name: str | None = None) -> dict[str, Any]:
    """The Responses API function tool that offers *fn* to the model (``strict`` off: optional parameters).

    Every parameter must be passable by keyword (the tool is called as ``fn(**arguments)``); ``self`` of a
    bound method and the arguments a ``functools.partial`` already fixes are left out. Raises
    :class:`ToolSchemaError` naming the function and the parameter when a parameter cannot be described.
    """
    if not callable(fn):
        raise ToolSchemaError(f"{fn!r} is not callable, so it cannot be a tool.", hint="Pass a function.")
    tool = _check_name(name or tool_name(fn))
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolSchemaError(
            f"Cannot read the signature of {tool} ({exc}).", hint="Wrap it in a typed def."
        ) from exc
    hints = parameter_types(fn)
    summary, notes = _parse_docstring(inspect.getdoc(_base(fn)))
    builder = _Builder(tool)
    props: dict[str, Any] = {}
    required: list[str] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            star = "*" if p.kind is p.VAR_POSITIONAL else "**"
            raise ToolSchemaError(
                f"Cannot offer {tool} as a tool: {star}{p.name} takes any number of arguments, which a tool "
                "schema cannot describe.",
                hint="Name each argument as a parameter with a type hint like str, int or list[str].",
            )
        if p.kind is p.POSITIONAL_ONLY:
            if p.default is not p.empty:
                continue  # cannot be passed by keyword; its default is used
            raise ToolSchemaError(
                f"Cannot offer {tool} as a tool: parameter {p.name!r} is positional-only, and tools are called "
                "with keyword arguments.",
                hint="Wrap it in a def whose parameters can be passed by name.",
            )
        if p.name in hints:
            schema = builder.schema(hints[p.name], p.name)
        elif p.default is not p.empty and type(p.default) in _SIMPLE:
            schema = {"type": _SIMPLE[type(p.default)]}  # unannotated: the default says the type
        else:
            schema = {}  # unannotated: any JSON value
        if p.name in notes and "description" not in schema:
            schema = {**schema, "description": notes[p.name]}
        if p.default is p.empty:
            required.append(p.name)
        else:
            ok, value = _json_value(p.default)
            if ok:
                schema = {**schema, "default": value}
        props[p.name] = schema
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    if builder.defs:
        parameters["$defs"] = builder.defs
    return {
        "type": "function",
        "name": tool,
        "description": summary,
        "parameters": parameters,
        "strict": False,
    }


# --- hosted tools ----------------------------------------------------------------------------------------


def _mcp_tool(url: str, label: str | None) -> dict[str, Any]:
    for secret in secret_query_values(url):
        register_secret(secret)  # so that no later message shows it
    try:
        parts = urlsplit(url)
        host = parts.hostname if parts.scheme in ("https", "http") else None
    except ValueError:
        host = None
    if not host:
        raise ToolSchemaError(
            f"--tool {redact_url(url)}: not a server URL.", hint="Give it as https://HOST/PATH."
        )
    if label is None:
        label = re.sub(r"[^A-Za-z0-9_-]", "_", host.removeprefix("www.").removeprefix("mcp."))
    elif not NAME_RE.match(label):
        raise ToolSchemaError(
            f"--tool mcp:{label}=...: the label must be letters, digits, '_' or '-'.",
            hint="For example --tool mcp:docs=https://example.com/mcp.",
        )
    return {"type": "mcp", "server_label": label, "server_url": url, "require_approval": "never"}


def hosted_tool(spec: str) -> dict[str, Any]:
    """The tool dict for one ``--tool`` value: a tool that runs on the API's side, not in the kernel.

    ``web_search``, ``file_search:vs_1,vs_2``, ``code_interpreter`` (an automatic container),
    ``image_generation``, an MCP server URL (``https://…``, labelled after its host) or ``mcp:LABEL=https://…``.
    MCP servers are added with ``require_approval: "never"``. A URL's secrets (a ``?key=``, a password) never
    appear in an error message.
    """
    text = spec.strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind in ("https", "http") and rest.startswith("//"):
        return _mcp_tool(text, None)
    if kind == "mcp":
        label, eq, url = rest.partition("=")
        if not eq or "://" in label:  # mcp:https://host/mcp?x=1 has no label
            return _mcp_tool(rest.strip(), None)
        return _mcp_tool(url.strip(), label.strip())
    if kind == "file_search":
        ids = [v.strip() for v in rest.split(",") if v.strip()]
        if not ids:
            raise ToolSchemaError(
                "--tool file_search needs the vector stores to search.",
                hint="Name them after a colon: --tool file_search:vs_abc123,vs_def456.",
            )
        return {"type": "file_search", "vector_store_ids": ids}
    simple = {
        "web_search": {"type": "web_search"},
        "code_interpreter": {"type": "code_interpreter", "container": {"type": "auto"}},
        "image_generation": {"type": "image_generation"},
    }
    if kind in simple and not rest:
        return dict(simple[kind])
    shown = redact_url(text) or ""
    raise ToolSchemaError(
        f"Unknown --tool {shown!r}.",
        hint=f"Accepted: {', '.join(HOSTED_SPECS)}. Functions of yours go in --tools NAME,NAME.",
    )


# --- describe --------------------------------------------------------------------------------------------


def _type_text(schema: Mapping[str, Any]) -> str:
    """A short human reading of a JSON schema: ``string``, ``list of integer``, ``"c" | "f"``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_type_text(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array":
        if "prefixItems" in schema:
            return f"[{', '.join(_type_text(s) for s in schema['prefixItems'])}]"
        return f"list of {_type_text(schema['items'])}" if "items" in schema else "list"
    if kind == "object" and "properties" in schema:
        return "{" + ", ".join(f"{k}: {_type_text(v)}" for k, v in schema["properties"].items()) + "}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return f"object of {_type_text(schema['additionalProperties'])}"
    if kind == "string" and "format" in schema:
        return f"string ({schema['format']})"
    return str(kind or schema.get("title") or "any")


def describe(tools: Sequence[Mapping[str, Any]]) -> str:
    """What the model sees of *tools*, as plain text (``%responses tools``); MCP URLs with secrets masked."""
    if not tools:
        return "No tools."
    out: list[str] = []
    for tool in tools:
        kind = tool.get("type")
        if kind != "function":
            if kind == "mcp":
                out.append(f"{tool.get('server_label')} (MCP server {redact_url(tool.get('server_url'))})")
            elif kind == "file_search":
                out.append(
                    f"file_search (hosted; vector stores {', '.join(tool.get('vector_store_ids', []))})"
                )
            else:
                out.append(f"{kind} (hosted)")
            continue
        params = tool.get("parameters", {})
        props: Mapping[str, Any] = params.get("properties", {})
        required = set(params.get("required", []))
        out.append(f"{tool['name']}({', '.join(props)})")
        if tool.get("description"):
            out.append(f"    {tool['description']}")
        for pname, schema in props.items():
            bits = [_type_text(schema), "required" if pname in required else "optional"]
            if "default" in schema:
                bits.append(f"default {json.dumps(schema['default'])}")
            note = f": {schema['description']}" if schema.get("description") else ""
            out.append(f"    - {pname} ({', '.join(bits)}){note}")
    return "\n".join(out)
