"""The emulator's deterministic tool-using model: multi-step function-call rollouts and hosted tool calls.

Everything follows from the **prompt** (the latest user message of the reconstructed conversation, directive
lines removed), the request's tools and the **rollout state**: the ``function_call`` /
``function_call_output`` items after that user message. A chain by ``previous_response_id`` and a full
resend of the same conversation therefore plan the same next step.

* The prompt names function tools (the name as a whole word); they are called one per response in order of
  first mention. ``NAME N times`` / ``NAME ×N`` / ``NAME xN`` / ``NAME twice`` repeats a tool.
* ``NAME(city="Paris", days=3)`` in the prompt is one call with those arguments (Python or JSON literals;
  one positional dict, or positionals in the schema's property order); otherwise the arguments come from
  the schema (:func:`arguments_for`).
* "in parallel" or "at once" in the prompt (and ``parallel_tool_calls`` not false): all remaining calls
  come in one response.
* When every planned call is made and answered, the answer quotes the tool outputs (``reply_for``).
* Hosted tools (``web_search``, ``file_search``, ``code_interpreter``, ``mcp``) in ``tools`` that the prompt
  names get their server-side call item, with its events, in the answering response.

Nothing here does I/O; :func:`emit_hosted` writes events through the builder's sequence object.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import model

__all__ = [
    "Plan",
    "arguments_for",
    "emit_hosted",
    "no_output_message",
    "plan_step",
    "scheduled_calls",
    "unanswered_call",
]

#: The most calls one ``N times`` can ask for (a typo must not plan a million responses).
MAX_REPEAT = 500
_PARALLEL_RE = re.compile(r"\b(?:in parallel|at once)\b", re.IGNORECASE)
_COUNT_RE = re.compile(r"\s*(?:(\d+)\s*times\b|[×x]\s*(\d+)\b|(twice)\b)", re.IGNORECASE)
_JSON_NAMES = {"true": True, "false": False, "null": None}
_STRING_LIMIT = 60

#: Hosted tool types → the phrases (besides the type's own name) that make the model use them.
_HOSTED_TRIGGERS: dict[str, tuple[str, ...]] = {
    "web_search": ("web_search", "web search", "search the web"),
    "file_search": ("file_search", "file search", "search the files", "search my files"),
    "code_interpreter": ("code_interpreter", "code interpreter", "run code", "run python"),
    "mcp": ("mcp",),
}
_HOSTED_ALIASES = {"web_search_preview": "web_search", "web_search_2025_08_26": "web_search"}


@dataclass
class Plan:
    """What the next response does: function calls, or (when ``calls`` is empty) hosted calls + the answer."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    hosted: list[dict[str, Any]] = field(default_factory=list)  # the request's hosted tool dicts, in order
    results: list[tuple[str, str]] = field(default_factory=list)  # (call_id, output) to quote


# -- the rollout state --------------------------------------------------------------------------------------


def _last_user_index(items: Sequence[dict[str, Any]]) -> int:
    for i in range(len(items) - 1, -1, -1):
        if items[i].get("type") == "message" and items[i].get("role") == "user":
            return i
    return -1


def unanswered_call(items: Sequence[dict[str, Any]]) -> str | None:
    """The ``call_id`` of the first ``function_call`` with no ``function_call_output`` among ``items``."""
    answered = {str(it.get("call_id")) for it in items if it.get("type") == "function_call_output"}
    for it in items:
        if it.get("type") == "function_call" and str(it.get("call_id")) not in answered:
            return str(it.get("call_id"))
    return None


def _outputs(items: Sequence[dict[str, Any]], since: int, new_from: int) -> list[tuple[str, str]]:
    """Outputs of the rollout (after index ``since``) and of the new input (from ``new_from``), once each."""
    seen: set[str] = set()
    out = []
    for i, it in enumerate(items):
        if it.get("type") != "function_call_output" or (i <= since and i < new_from):
            continue
        call_id = str(it.get("call_id"))
        if call_id not in seen:
            seen.add(call_id)
            value = it.get("output")
            out.append((call_id, value if isinstance(value, str) else model.content_text(value)))
    return out


# -- the schedule the prompt asks for -----------------------------------------------------------------------


def _function_tools(tools: Sequence[Any]) -> dict[str, dict[str, Any]]:
    return {
        t["name"]: t
        for t in tools
        if isinstance(t, dict)
        and t.get("type") == "function"
        and isinstance(t.get("name"), str)
        and t["name"]
    }


def _closing_paren(text: str, start: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``start`` (quotes respected), or -1."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i if ch == ")" else -1
        i += 1
    return -1


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking is not a literal")
        return {
            _literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None
        }
    return ast.literal_eval(node)


def _explicit_arguments(call_text: str, tool: dict[str, Any]) -> dict[str, Any] | None:
    """``(city="Paris", days=3)`` → ``{"city": "Paris", "days": 3}``; None if it is not a literal call."""
    try:
        node = ast.parse("f" + call_text, mode="eval").body
        assert isinstance(node, ast.Call)
        positional = [_literal(a) for a in node.args]
        if any(k.arg is None for k in node.keywords):
            return None  # **kwargs
        keywords = {str(k.arg): _literal(k.value) for k in node.keywords}
    except (SyntaxError, ValueError, TypeError, AssertionError, RecursionError):
        return None
    if len(positional) == 1 and isinstance(positional[0], dict) and not keywords:
        return {str(k): v for k, v in positional[0].items()}
    names = list((tool.get("parameters") or {}).get("properties") or {})
    if len(positional) > len(names):
        return None
    return {**dict(zip(names, positional, strict=False)), **keywords}


def _count(text: str, pos: int) -> int:
    m = _COUNT_RE.match(text, pos)
    if m is None:
        return 1
    if m.group(3):
        return 2
    return max(1, min(int(m.group(1) or m.group(2)), MAX_REPEAT))


def scheduled_calls(prompt: str, tools: Sequence[Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """Every function call the prompt asks for, in order: ``(name, explicit arguments or None)``."""
    by_name = _function_tools(tools)
    if not by_name:
        return []
    names = sorted(by_name, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])")
    matches = list(pattern.finditer(prompt))
    explicit: list[tuple[int, str, dict[str, Any], int]] = []
    for m in matches:
        if prompt.startswith("(", m.end()):
            end = _closing_paren(prompt, m.end())
            args = _explicit_arguments(prompt[m.end() : end + 1], by_name[m.group(1)]) if end > 0 else None
            if args is not None:
                explicit.append((m.start(), m.group(1), args, end + 1))
    explicit_names = {name for _, name, _, _ in explicit}
    explicit_at = {start: (name, args, end) for start, name, args, end in explicit}
    schedule: list[tuple[str, dict[str, Any] | None]] = []
    mentioned: set[str] = set()
    for m in matches:
        name = m.group(1)
        if m.start() in explicit_at:
            _, args, end = explicit_at[m.start()]
            schedule += [(name, args)] * _count(prompt, end)
        elif name not in explicit_names and name not in mentioned:
            mentioned.add(name)
            schedule += [(name, None)] * _count(prompt, m.end())
    return schedule


# -- arguments from the schema ------------------------------------------------------------------------------


def _clamp(value: float, schema: dict[str, Any], step: float) -> float:
    low = schema.get("minimum")
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = schema["exclusiveMinimum"] + step
    high = schema.get("maximum")
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = schema["exclusiveMaximum"] - step
    if isinstance(low, int | float):
        value = max(value, low)
    if isinstance(high, int | float):
        value = min(value, high)
    return value


def _value(schema: Any, name: str, text: str, step: int, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 8:
        return text or name
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or () if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return _value(options[0], name, text, step, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "integer":
        return int(_clamp(step, schema, 1))
    if kind == "number":
        return _clamp(1.5, schema, 0.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        return [_value(schema.get("items"), name, text, step, depth + 1) for _ in range(count)]
    if kind == "object":
        return _object(schema, text, step, depth + 1)
    value = text or name
    if isinstance(schema.get("maxLength"), int):
        value = value[: schema["maxLength"]]
    if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
        value = value.ljust(schema["minLength"], "x")
    return value


def _object(schema: dict[str, Any], text: str, step: int, depth: int) -> dict[str, Any]:
    props = schema.get("properties") or {}
    required = schema.get("required")
    keys = [k for k in props if k in required] if isinstance(required, list) else list(props)
    return {k: _value(props[k], k, text, step, depth) for k in keys}


def arguments_for(tool: dict[str, Any], prompt: str, step: int) -> dict[str, Any]:
    """Deterministic arguments for a function tool, from its JSON schema (see docs/emulator.md "Tools").

    Required properties (all of them when the schema has no ``required`` list): enum/const → the first
    value; string → the prompt on one line (60 characters, ``maxLength``/``minLength`` respected), or the
    property's name for an empty prompt; integer → ``step`` (the call's number in the rollout, from 1);
    number → 1.5; boolean → true; array → one element; object → the same rules, recursively. Numbers are
    clamped into ``minimum``/``maximum``.
    """
    text = " ".join(model.strip_directives(prompt).split())[:_STRING_LIMIT]
    return _object(tool.get("parameters") or {}, text, step, 0)


# -- the plan of one response -------------------------------------------------------------------------------


def _hosted_kind(tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    kind = _HOSTED_ALIASES.get(str(tool.get("type")), str(tool.get("type")))
    return kind if kind in _HOSTED_TRIGGERS else None


def _hosted_mention(tool: dict[str, Any], prompt: str) -> int | None:
    kind = _hosted_kind(tool)
    triggers = list(_HOSTED_TRIGGERS.get(kind or "", ()))
    if kind == "mcp" and tool.get("server_label"):
        triggers.append(str(tool["server_label"]))
    found = [
        m.start()
        for t in triggers
        if (m := re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", prompt, re.IGNORECASE))
    ]
    return min(found) if found else None


def plan_step(req: dict[str, Any], conversation: list[dict[str, Any]], new_from: int) -> Plan:
    """Plan the next response of the rollout. ``conversation`` = history + new input; the new input starts
    at index ``new_from``."""
    last_user = _last_user_index(conversation)
    prompt = (
        model.strip_directives(model.content_text(conversation[last_user].get("content")))
        if last_user >= 0
        else ""
    )
    tools = [t for t in req.get("tools") or () if isinstance(t, dict)]
    choice = req.get("tool_choice", "auto")
    results = _outputs(conversation, last_user, new_from)
    if choice == "none":
        return Plan(results=results)
    by_name = _function_tools(tools)
    schedule = scheduled_calls(prompt, tools)
    if isinstance(choice, dict) and choice.get("name") in by_name:
        schedule = [c for c in schedule if c[0] == choice["name"]] or [(choice["name"], None)]
    elif choice == "required" and by_name and not schedule:
        schedule = [(next(iter(by_name)), None)]
    made = {
        str(it.get("call_id")) for it in conversation[last_user + 1 :] if it.get("type") == "function_call"
    }
    remaining = schedule[len(made) :]
    if remaining:
        parallel = _PARALLEL_RE.search(prompt) and req.get("parallel_tool_calls", True) is not False
        take = remaining if parallel else remaining[:1]
        calls = [
            (name, args if args is not None else arguments_for(by_name[name], prompt, len(made) + i + 1))
            for i, (name, args) in enumerate(take)
        ]
        return Plan(calls=calls, results=results)
    mentions = [(pos, i) for i, t in enumerate(tools) if (pos := _hosted_mention(t, prompt)) is not None]
    hosted = [tools[i] for _, i in sorted(mentions)]
    return Plan(hosted=hosted, results=results)


# -- hosted tool items and their events ---------------------------------------------------------------------


def _hosted_item(tool: dict[str, Any], prompt: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(event prefix, item while in progress, extra fields when completed) for one hosted tool."""
    query = " ".join(model.strip_directives(prompt).split())[:100] or "(empty prompt)"
    kind = _hosted_kind(tool)
    if kind == "web_search":
        action = {"type": "search", "query": query}
        return "web_search_call", {"id": _hex_id("ws"), "type": "web_search_call", "action": action}, {}
    if kind == "file_search":
        item = {"id": _hex_id("fs"), "type": "file_search_call", "queries": [query], "results": None}
        return "file_search_call", item, {}
    if kind == "code_interpreter":
        code = f"text = {query!r}\nprint(len(text.split()))"
        item = {
            "id": _hex_id("ci"),
            "type": "code_interpreter_call",
            "code": "",
            "container_id": _hex_id("cntr"),
            "outputs": None,
        }
        return "code_interpreter_call", item, {"code": code, "outputs": [_logs(query)]}
    label = str(tool.get("server_label") or "mcp")
    allowed = tool.get("allowed_tools")
    name = allowed[0] if isinstance(allowed, list) and allowed and isinstance(allowed[0], str) else "search"
    item = {
        "id": _hex_id("mcp"),
        "type": "mcp_call",
        "server_label": label,
        "name": name,
        "arguments": "",
        "output": None,
        "error": None,
    }
    output = f"{label}.{name} found 1 result for {query!r}"
    return "mcp_call", item, {"arguments": json.dumps({"query": query}), "output": output}


def _logs(query: str) -> dict[str, Any]:
    return {"type": "logs", "logs": f"{len(query.split())}\n"}


def _hex_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def emit_hosted(seq: Any, index: int, tool: dict[str, Any], prompt: str) -> dict[str, Any]:
    """Add a hosted tool call's events to ``seq`` (the builder's sequence) and return the finished item.

    Order as the SDK's event types describe it: ``output_item.added`` (in progress), ``<kind>.in_progress``,
    then ``searching`` (web/file search), the code deltas + ``interpreting`` (code interpreter) or the
    argument deltas (MCP), ``<kind>.completed``, ``output_item.done``.
    """
    prefix, item, extra = _hosted_item(tool, prompt)
    item = dict(item, status="in_progress")
    seq.add({"type": "response.output_item.added", "output_index": index, "item": item}, output=True)
    common = {"item_id": item["id"], "output_index": index}
    seq.add({"type": f"response.{prefix}.in_progress", **common})
    if prefix in ("web_search_call", "file_search_call"):
        seq.add({"type": f"response.{prefix}.searching", **common})
    elif prefix == "code_interpreter_call":
        _deltas(seq, "response.code_interpreter_call_code", common, extra["code"], "code")
        seq.add({"type": "response.code_interpreter_call.interpreting", **common})
    else:
        _deltas(seq, "response.mcp_call_arguments", common, extra["arguments"], "arguments")
    seq.add({"type": f"response.{prefix}.completed", **common})
    done = dict(item, status="completed", **extra)
    seq.add({"type": "response.output_item.done", "output_index": index, "item": done})
    return done


def _deltas(seq: Any, prefix: str, common: dict[str, Any], text: str, key: str) -> None:
    for piece in model.split_deltas(text):
        seq.delta({"type": f"{prefix}.delta", **common, "delta": piece})
    seq.add({"type": f"{prefix}.done", **common, key: text})


def no_output_message(call_id: str) -> str:
    """The real API's 400 for a function call without its output (openai/openai-agents-python#673)."""
    return f"No tool output found for function call {call_id}."
