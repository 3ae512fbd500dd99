"""Function tools run in the kernel: the record of one call (:class:`ToolCall`) and the set of tools a turn
offers (:class:`ToolBox`).

Pure core: no I/O, no Jupyter. The tool loop (``tool_loop.py``) creates one record per ``function_call`` item
a response asks for (:meth:`ToolBox.prepare`, which checks the arguments against the tool's schema), runs it
(:meth:`ToolBox.run`), and sends ``output`` back as the ``function_call_output``. Whatever goes wrong (bad JSON,
an unknown tool, arguments that do not fit, an exception in the tool) becomes an ``Error: ...`` output the
model can read and correct itself from; only ``KeyboardInterrupt`` escapes, for the caller to handle.

What the model is sent is redacted (:func:`~ipy_responses_ws.redact.redact`): registered secrets, the values of
key-like environment variables (``OPENAI_API_KEY``, ``*_TOKEN`` …), ``Bearer`` tokens and key-like URL query
values never leave the kernel, even when a tool returns them or puts them in an exception message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import enum
import inspect
import json
import os
import sys
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from .redact import environment_secrets, redact
from .tool_schema import ToolSchemaError, function_tool, hosted_tool, parameter_types, tool_name

__all__ = ["ToolCall", "ToolBox", "DEFAULT_OUTPUT_LIMIT", "format_output"]

#: Outputs longer than this many characters are cut (a tool that returns a whole DataFrame would otherwise
#: spend the model's context, and the user's money, on it).
DEFAULT_OUTPUT_LIMIT = 20_000


@dataclass
class ToolCall:
    """One function call the model asked for, and how it went (``-o NAME``'s ``tool_calls`` entries).

    ``status``: ``pending`` (asked for, not run yet) → ``running`` → ``ok`` | ``error`` (the tool raised, or the
    arguments did not fit) | ``denied`` (``--approve`` and the user said no) | ``cancelled`` (Interrupt or Stop).
    Every status but ``pending``/``running`` has an ``output``: the text the model was (or will be) sent.
    """

    name: str
    call_id: str
    arguments: dict[str, Any] = field(default_factory=dict)  # parsed; {} when they were not valid JSON
    arguments_text: str = ""  # as the model sent them
    output: str = ""  # the function_call_output sent back
    error: str | None = None  # "ValueError: ..." | "invalid arguments: ..." | "denied by the user" | ...
    seconds: float = 0.0
    status: str = "pending"
    step: int = 1  # which response of the turn asked for it (1 = the first)

    def output_item(self) -> dict[str, Any]:
        """The ``function_call_output`` input item that answers this call."""
        return {"type": "function_call_output", "call_id": self.call_id, "output": self.output}

    def finish_cancelled(self) -> ToolCall:
        """Mark the call cancelled (Interrupt or Stop before or while it ran); the model is told so."""
        return self._refuse("cancelled", "cancelled by the user")

    def deny(self) -> ToolCall:
        """Mark the call denied (``--approve`` and the user said no); the model is told so."""
        return self._refuse("denied", "denied by the user")

    def _refuse(self, status: str, reason: str) -> ToolCall:
        self.status, self.error, self.output = status, reason, f"Error: the call was {reason}."
        return self


# --- checking arguments against a schema -----------------------------------------------------------------

_JSON_KINDS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}
_A = {"integer": "an integer", "array": "a list", "object": "an object", "null": "null"}


def _kind_of(value: Any) -> str:
    for kind in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_kind(value, kind):
            return _A.get(kind, f"a {kind}")
    return type(value).__name__


def _is_kind(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False  # JSON true is not 1
    return isinstance(value, _JSON_KINDS.get(kind, object))


def _label(path: str) -> str:
    return repr(path) if path else "the arguments"


def check_value(
    value: Any, schema: Mapping[str, Any], path: str = "", root: Mapping[str, Any] | None = None
) -> str | None:
    """Why *value* does not fit the JSON *schema* (``"'city' is required"``), or ``None`` when it does.

    Covers what :func:`~ipy_responses_ws.tool_schema.function_tool` writes: ``type``, ``enum``/``const``,
    ``anyOf``/``oneOf``/``allOf``, object ``properties``/``required``/``additionalProperties``, array
    ``items``/``prefixItems``/``minItems``/``maxItems``, and ``$ref`` into the root's ``$defs``. Other keywords
    (pydantic's ``minLength``, ``pattern`` …) are left to the model class, checked when the call runs.
    """
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.rsplit("/", 1)[-1])
        if target is not None:
            schema = target
    for sub in schema.get("allOf", ()):
        if why := check_value(value, sub, path, root):
            return why
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        reasons = [check_value(value, sub, path, root) for sub in branches]
        if all(reasons):
            return next(
                (r for r, s in zip(reasons, branches, strict=True) if s.get("type") != "null"), reasons[0]
            )
    if "enum" in schema and not any(value == e and type(value) is type(e) for e in schema["enum"]):
        return f"{_label(path)} must be one of {', '.join(json.dumps(e) for e in schema['enum'])}"
    if "const" in schema and value != schema["const"]:
        return f"{_label(path)} must be {json.dumps(schema['const'])}"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_kind(value, k) for k in kinds):
            want = " or ".join(_A.get(k, f"a {k}") for k in kinds)
            return f"{_label(path)} must be {want}, not {_kind_of(value)}"
    if isinstance(value, dict):
        return _check_object(value, schema, path, root)
    if isinstance(value, list):
        return _check_array(value, schema, path, root)
    return None


def _check_object(
    value: dict[str, Any], schema: Mapping[str, Any], path: str, root: Mapping[str, Any]
) -> str | None:
    props: Mapping[str, Any] = schema.get("properties", {})
    for key in schema.get("required", ()):
        if key not in value:
            return f"{_label(f'{path}.{key}' if path else key)} is required"
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key in props:
            sub = props[key]
        elif extra is False:
            known = ", ".join(props) or "none"
            return f"{_label(where)} is not a known {'field' if path else 'argument'} (known: {known})"
        elif isinstance(extra, Mapping):
            sub = extra
        else:
            continue
        if why := check_value(item, sub, where, root):
            return why
    return None


def _check_array(
    value: list[Any], schema: Mapping[str, Any], path: str, root: Mapping[str, Any]
) -> str | None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        return f"{_label(path)} needs at least {schema['minItems']} items, not {len(value)}"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{_label(path)} takes at most {schema['maxItems']} items, not {len(value)}"
    fixed = schema.get("prefixItems", ())
    for i, item in enumerate(value):
        sub = fixed[i] if i < len(fixed) else schema.get("items")
        if sub is not None and (why := check_value(item, sub, f"{path}[{i}]", root)):
            return why
    return None


# --- JSON values back into the annotated Python types ----------------------------------------------------


def from_json(value: Any, tp: Any) -> Any:
    """*value* (parsed JSON) as the annotation *tp* asks: dataclass, pydantic model, Enum, TypedDict, tuple,
    set, ``datetime``/``date``, ``Path``, recursively through containers and ``X | None``. Other values are
    returned as they are. Raises ``ValueError``/``TypeError`` (or pydantic's ``ValidationError``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return from_json(value, args[0])
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        errors: list[Exception] = []
        for member in args:  # the first member the value converts into
            if member is type(None):
                continue
            try:
                return from_json(value, member)
            except (ValueError, TypeError) as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return value
    if isinstance(value, list) and (origin or tp) in (list, tuple, set, frozenset):
        kind = origin or tp
        if kind is tuple and args and args[-1] is not Ellipsis:
            return tuple(from_json(v, a) for v, a in zip(value, args, strict=False))
        items = [from_json(v, args[0]) for v in value] if args else value
        return kind(items)
    if isinstance(value, dict) and origin is dict and len(args) == 2:
        return {k: from_json(v, args[1]) for k, v in value.items()}
    if not isinstance(tp, type):
        return value
    if issubclass(tp, enum.Enum):
        return tp(value)
    if isinstance(value, dict) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return tp(**{k: from_json(v, hints.get(k, Any)) for k, v in value.items()})
    if isinstance(value, dict) and typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return {k: from_json(v, hints.get(k, Any)) for k, v in value.items()}
    pyd = sys.modules.get("pydantic")
    if pyd is not None and issubclass(tp, pyd.BaseModel):
        return tp.model_validate(value)
    if isinstance(value, str) and issubclass(tp, dt.datetime | dt.date):
        return tp.fromisoformat(value)
    if isinstance(value, str) and issubclass(tp, PurePath):
        return tp(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# --- output ----------------------------------------------------------------------------------------------


def format_output(result: Any, limit: int = DEFAULT_OUTPUT_LIMIT) -> str:
    """The text the model gets for what a tool returned.

    A ``str`` as it is; ``None`` as ``"None"`` (the call happened and returned nothing: an empty output would
    leave the model guessing); dicts, lists, tuples, numbers and booleans as JSON (``default=str`` for what JSON
    cannot hold); dataclasses and pydantic models as their JSON; anything else as its ``repr``. Text over
    *limit* characters is cut, with a note saying how much.
    """
    pyd = sys.modules.get("pydantic")
    if isinstance(result, str):
        text = result
    elif result is None:
        text = "None"
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        text = json.dumps(dataclasses.asdict(result), default=str, ensure_ascii=False)
    elif pyd is not None and isinstance(result, pyd.BaseModel):
        text = result.model_dump_json()
    elif isinstance(result, dict | list | tuple | int | float | bool):
        text = json.dumps(result, default=str, ensure_ascii=False)
    else:
        text = repr(result)
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[:limit]}\n[output truncated: {cut:,} of {len(text):,} characters cut]"
    return text


def _clean(text: str) -> str:
    """*text* without registered secrets or the values of key-like environment variables (read at call time)."""
    return redact(text, environment_secrets(os.environ))


# --- the tool box ----------------------------------------------------------------------------------------

ToolSource = Callable[..., Any] | Mapping[str, Callable[..., Any]]


class ToolBox:
    """The function tools (Python callables) and hosted tools one turn offers the model.

    ``ToolBox([get_weather, lookup])`` offers each callable under its ``__name__``; a mapping
    ``{"name": fn}`` picks the names. ``hosted`` adds API-side tools, as dicts or ``--tool`` values
    (``"web_search"``, ``"file_search:vs_1"`` …). ``output_limit`` caps the characters of each output.
    Building one checks every callable (:class:`~ipy_responses_ws.tool_schema.ToolSchemaError` otherwise).
    """

    def __init__(
        self,
        tools: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]] = (),
        *,
        hosted: Iterable[str | Mapping[str, Any]] = (),
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        pairs = list(tools.items()) if isinstance(tools, Mapping) else [(tool_name(fn), fn) for fn in tools]
        self.output_limit = output_limit
        self._functions: dict[str, Callable[..., Any]] = {}
        self._schemas: dict[str, dict[str, Any]] = {}
        self._types: dict[str, dict[str, Any]] = {}
        for name, fn in pairs:
            if name in self._functions:
                raise ToolSchemaError(f"Two tools are called {name!r}.", hint="Give each tool its own name.")
            self._schemas[name] = function_tool(fn, name=name)
            self._functions[name] = fn
            self._types[name] = parameter_types(fn)
        self.hosted: list[dict[str, Any]] = [
            hosted_tool(h) if isinstance(h, str) else dict(h) for h in hosted
        ]

    @classmethod
    def from_namespace(
        cls,
        names: str | Iterable[str],
        namespace: Mapping[str, Any],
        *,
        hosted: Iterable[str | Mapping[str, Any]] = (),
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ToolBox:
        """The tools named in *names* (``"get_weather,lookup"`` or a list), looked up in *namespace* (the
        user's variables). A missing or non-callable name is a ToolSchemaError that names it."""
        if isinstance(names, str):
            names = names.split(",")
        picked: dict[str, Callable[..., Any]] = {}
        for raw in names:
            name = raw.strip()
            if not name:
                continue
            if name not in namespace:
                raise ToolSchemaError(
                    f"No function called {name!r} to offer as a tool.",
                    hint=f"Define it first (def {name}(city: str) -> str: ...), or check the spelling in --tools.",
                )
            fn = namespace[name]
            if not callable(fn):
                raise ToolSchemaError(
                    f"{name!r} is a {type(fn).__name__}, not a function, so it cannot be a tool.",
                    hint="Pass the names of functions in --tools.",
                )
            picked[name] = fn
        return cls(picked, hosted=hosted, output_limit=output_limit)

    @property
    def schemas(self) -> list[dict[str, Any]]:
        """The ``tools`` of the request: the function tools, then the hosted ones."""
        return [*self._schemas.values(), *self.hosted]

    @property
    def names(self) -> list[str]:
        """The names of the function tools (the ones run in the kernel)."""
        return list(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __len__(self) -> int:
        return len(self._functions) + len(self.hosted)

    def __repr__(self) -> str:
        hosted = [h.get("type") for h in self.hosted]
        return f"ToolBox(functions={self.names}, hosted={hosted})"

    def prepare(self, item: Mapping[str, Any], step: int = 1) -> ToolCall:
        """The :class:`ToolCall` for one ``function_call`` output item, arguments parsed and checked.

        When the call cannot run (unknown tool, arguments that are not JSON or do not fit the schema) the record
        comes back with status ``error`` and an ``output`` that tells the model what to fix.
        """
        name = str(item.get("name") or "")
        text = item.get("arguments") or ""
        call = ToolCall(
            name=name, call_id=str(item.get("call_id") or ""), arguments_text=str(text), step=step
        )
        if name not in self._functions:
            known = ", ".join(self.names) or "none"
            return self._fail(
                call, f"unknown tool {name!r}", f"Error: there is no tool called {name!r} (tools: {known})"
            )
        try:
            args = json.loads(text) if str(text).strip() else {}
        except ValueError as exc:
            return self._invalid(call, f"not valid JSON ({exc})")
        if not isinstance(args, dict):
            return self._invalid(call, f"they must be a JSON object, not {_kind_of(args)}")
        call.arguments = args
        parameters = self._schemas[name]["parameters"]
        if why := check_value(args, parameters):
            return self._invalid(call, why)
        return call

    def run(self, call: ToolCall) -> ToolCall:
        """Run *call* (made by :meth:`prepare`) with keyword arguments and record how it went.

        JSON values become the dataclass, pydantic model or Enum the annotation asks for. An exception becomes
        status ``error`` with ``error`` = ``"TypeName: message"`` and output ``"Error: TypeName: message"``,
        redacted. ``KeyboardInterrupt`` is not caught. A call already finished (failed in :meth:`prepare`, denied,
        cancelled) is returned as it is.

        An ``async def`` tool is run with :func:`asyncio.run` when this thread has no running event loop; when
        it has one (the kernel's main thread under ipykernel ≥ 6) the call fails with a message saying so, as
        blocking on the loop we are in would deadlock. A caller that wants async tools there calls ``run`` from
        a worker thread.
        """
        if call.status not in ("pending", "running"):  # the caller may mark it running before it runs
            return call
        fn = self._functions.get(call.name)
        if fn is None:
            return self._fail(
                call, f"unknown tool {call.name!r}", f"Error: there is no tool called {call.name!r}"
            )
        hints = self._types[call.name]
        try:
            kwargs = {k: from_json(v, hints[k]) if k in hints else v for k, v in call.arguments.items()}
        except Exception as exc:  # a pydantic ValidationError is a ValueError; be broad all the same
            return self._invalid(call, f"{type(exc).__name__}: {exc}")
        call.status = "running"
        started = time.perf_counter()
        try:
            result = fn(**kwargs)
            if inspect.isawaitable(result):
                result = _await(result, call.name)
        except Exception as exc:
            call.seconds = time.perf_counter() - started
            reason = _clean(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return self._fail(call, reason, f"Error: {reason}")
        call.seconds = time.perf_counter() - started
        call.output = _clean(format_output(result, self.output_limit))
        call.status = "ok"
        return call

    def _invalid(self, call: ToolCall, why: str) -> ToolCall:
        why = _clean(why)
        return self._fail(
            call, f"invalid arguments: {why}", f"Error: invalid arguments for {call.name}: {why}"
        )

    @staticmethod
    def _fail(call: ToolCall, error: str, output: str) -> ToolCall:
        call.status, call.error, call.output = "error", error, output
        return call


class AsyncToolError(RuntimeError):
    """An ``async def`` tool could not be awaited."""


def _await(awaitable: Any, name: str) -> Any:
    """Run an ``async def`` tool's coroutine to its end and return its value.

    On a thread without a running loop: ``asyncio.run``. On one with a loop running (a kernel cell: ipykernel
    runs cells inside its loop, which is blocked while the cell waits), on a short-lived helper thread with a
    loop of its own; this thread waits for it, so the tool still behaves like a call.
    """

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"tool-{name}") as pool:
        return pool.submit(asyncio.run, wait()).result()
