"""Build the ordered server events of one response (PROTOCOL.md §2), transport-neutral.

`build_turn()` turns a validated request plus the reconstructed conversation into a `Turn`: the list of
event payloads (without ``sequence_number``/``stream_id``; the sender numbers and tags them), the pause
before each event, the final Response snapshot and the items to remember for continuations.
The same payloads go out as WS text frames and as SSE ``data:`` lines.
"""

from __future__ import annotations

import json
import random
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import model, tools

__all__ = [
    "ModelSettings",
    "Turn",
    "build_turn",
    "error_body",
    "failure_tail",
    "new_id",
    "usage_block",
]

_OBF_ALPHABET = string.ascii_letters + string.digits
#: §2.3: in real recordings len(delta) + len(obfuscation) == 16.
_OBF_PAD_TO = 16
#: Hidden reasoning the emulator "thinks" on top of the visible summary, to make reasoning_tokens visible.
_HIDDEN_REASONING_TOKENS = 32
_ITEM_OVERHEAD_TOKENS = 4


def new_id(prefix: str) -> str:
    """IDs shaped like the real ones (§2.9): ``resp_``/``msg_``/``rs_``/``fc_`` + 48 hex, ``call_`` + 24."""
    if prefix == "call":
        return "call_" + "".join(random.choices(_OBF_ALPHABET, k=24))
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass(frozen=True)
class ModelSettings:
    """Pacing and length of answers; per emulator, overridable per request through ``metadata``."""

    ttft: float = 0.0
    token_rate: float = 0.0
    words: int | None = None

    def override(self, metadata: dict[str, Any] | None) -> ModelSettings:
        """Apply ``metadata`` keys ``emulator_ttft``, ``emulator_token_rate``, ``emulator_words``."""
        md = metadata or {}
        try:
            return ModelSettings(
                ttft=float(md.get("emulator_ttft", self.ttft)),
                token_rate=float(md.get("emulator_token_rate", self.token_rate)),
                words=int(md["emulator_words"]) if "emulator_words" in md else self.words,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad emulator_* metadata value: {exc}") from exc


@dataclass
class Turn:
    """One planned response: events to send and what to remember if it finishes."""

    response_id: str
    events: list[dict[str, Any]]
    delays: list[float]
    response: dict[str, Any]  # the final snapshot (completed or incomplete)
    base: dict[str, Any]  # the in-progress snapshot
    items: list[dict[str, Any]] = field(default_factory=list)  # conversation incl. output, for children


def usage_block(
    input_tokens: int, output_tokens: int, *, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    """§2.8 usage; ``cache_write_tokens`` is required by SDK 3.54.0's model."""
    cached = min(cached, input_tokens)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": input_tokens - cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"message": message, "type": type_, "param": param, "code": code}


def _items_tokens(items: list[dict[str, Any]]) -> int:
    total = 0
    for it in items:
        text = ""
        if it.get("type") == "message":
            text = model.content_text(it.get("content"))
        elif it.get("type") in ("function_call", "function_call_output"):
            text = str(it.get("arguments") or it.get("output") or "")
        elif it.get("type") == "reasoning":
            text = " ".join(s.get("text", "") for s in it.get("summary") or ())
        total += model.count_tokens(text) + _ITEM_OVERHEAD_TOKENS
    return total


def _normalize_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for tool in tools or ():
        if tool.get("type") == "function":
            tool = {
                "type": "function",
                "name": tool.get("name"),
                "description": tool.get("description"),
                "parameters": tool.get("parameters"),
                "strict": tool.get("strict", True),
            }
        out.append(tool)
    return out


def snapshot_base(req: dict[str, Any], response_id: str, created_at: int) -> dict[str, Any]:
    """The Response object fields of §2.9, as in ``response.created``."""
    reasoning = req.get("reasoning") or {}
    text = {"format": {"type": "text"}, "verbosity": "medium"}
    text.update(req.get("text") or {})
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": req.get("max_tool_calls"),
        "model": req.get("model") or "gpt-5-mini",
        "output": [],
        "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": req.get("previous_response_id"),
        "prompt_cache_key": req.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": req.get("safety_identifier"),
        "service_tier": "auto",
        "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0),
        "text": text,
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": _normalize_tools(req.get("tools")),
        "top_logprobs": req.get("top_logprobs", 0),
        "top_p": req.get("top_p", 1.0),
        "truncation": req.get("truncation", "disabled"),
        "usage": None,
        "user": req.get("user"),
        "metadata": req.get("metadata") or {},
    }


class _Seq:
    """Accumulates events and the pause before each."""

    def __init__(self, settings: ModelSettings, obfuscate: bool) -> None:
        self.events: list[dict[str, Any]] = []
        self.delays: list[float] = []
        self.obfuscate = obfuscate
        self._gap = 1.0 / settings.token_rate if settings.token_rate > 0 else 0.0
        self._pending_ttft = settings.ttft

    def add(self, event: dict[str, Any], *, output: bool = False, delta: bool = False) -> None:
        delay = 0.0
        if output and self._pending_ttft:
            delay, self._pending_ttft = self._pending_ttft, 0.0
        elif delta:
            delay = self._gap
        self.events.append(event)
        self.delays.append(delay)

    def delta(self, event: dict[str, Any]) -> None:
        if self.obfuscate:
            pad = max(_OBF_PAD_TO - len(event["delta"]), 1)
            event["obfuscation"] = "".join(random.choices(_OBF_ALPHABET, k=pad))
        self.add(event, output=True, delta=True)


def build_turn(
    req: dict[str, Any],
    *,
    history: list[dict[str, Any]],
    new_items: list[dict[str, Any]],
    settings: ModelSettings,
    cached_tokens: int = 0,
    refuse: bool = False,
    response_id: str | None = None,
    think: bool = False,
    seal: Callable[[str, str], str] | None = None,
) -> Turn:
    """Plan the events for one response. ``history`` is the parent chain's items (input and output).

    ``think`` gives the response a reasoning item even if the request asked for none (the ``think``
    fault). ``seal(item_id, summary)`` makes a reasoning item's ``encrypted_content``; it is passed when the
    request has ``include: ["reasoning.encrypted_content"]``.
    """
    rid = response_id or new_id("resp")
    base = snapshot_base(req, rid, int(time.time()))
    conversation = history + new_items
    users = model.user_messages(conversation)
    prompt = users[-1] if users else ""
    instructions = req.get("instructions")
    input_tokens = _items_tokens(conversation) + model.count_tokens(instructions or "")
    obfuscate = (req.get("stream_options") or {}).get("include_obfuscation", True) is not False
    seq = _Seq(settings, obfuscate)
    seq.add({"type": "response.created", "response": base})
    seq.add({"type": "response.in_progress", "response": base})

    output: list[dict[str, Any]] = []
    reasoning_tokens = 0
    budget = req.get("max_output_tokens")
    truncated = False
    generate = req.get("generate", True) is not False and not (
        (req.get("prompt_cache_options") or {}).get("prewarm")
    )

    if generate:
        reasoning = req.get("reasoning") or {}
        if think or reasoning.get("summary") or reasoning.get("effort") not in (None, "none", "minimal"):
            item, reasoning_tokens = _reasoning(seq, len(output), users, bool(reasoning.get("summary")), seal)
            output.append(item)
        step = tools.plan_step(req, conversation, len(history))
        for name, args in step.calls:
            output.append(_function_call(seq, len(output), name, args))
        if not step.calls:
            for hosted in step.hosted:
                output.append(tools.emit_hosted(seq, len(output), hosted, prompt))
            if refuse:
                text, kind = model.refusal_for(users), "refusal"
            else:
                text = model.reply_for(
                    users, words=settings.words, instructions=instructions, tool_results=step.results
                )
                kind = "output_text"
            if budget is not None:
                limit = max(budget - reasoning_tokens, 0) * 4
                truncated = len(text) > limit
            else:
                limit = None
            output.append(_message(seq, len(output), text, kind, limit))

    visible = sum(
        model.count_tokens(p.get("text") or p.get("refusal") or "")
        for it in output
        if it["type"] == "message"
        for p in it["content"]
    ) + sum(model.count_tokens(it.get("arguments", "")) for it in output if it["type"] == "function_call")
    usage = usage_block(
        input_tokens, visible + reasoning_tokens, cached=cached_tokens, reasoning=reasoning_tokens
    )
    final = dict(base, output=output, usage=usage, service_tier="default")
    final["completed_at"] = int(time.time())
    if truncated:
        final.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
        seq.add({"type": "response.incomplete", "response": final})
    else:
        final["status"] = "completed"
        seq.add({"type": "response.completed", "response": final})
    return Turn(
        response_id=rid,
        events=seq.events,
        delays=seq.delays,
        response=final,
        base=base,
        items=conversation + output,
    )


def _reasoning(
    seq: _Seq, index: int, users: list[str], with_summary: bool, seal: Callable[[str, str], str] | None
) -> tuple[dict[str, Any], int]:
    item_id = new_id("rs")
    text = model.reasoning_summary_for(users) if with_summary else ""
    sealed = {"encrypted_content": seal(item_id, text)} if seal is not None else {}
    seq.add(
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {"id": item_id, "type": "reasoning", "summary": [], **sealed},
        },
        output=True,
    )
    summary: list[dict[str, Any]] = []
    if with_summary:
        common = {"item_id": item_id, "output_index": index, "summary_index": 0}
        seq.add({"type": "response.reasoning_summary_part.added", **common, "part": _summary("")})
        for piece in model.split_deltas(text):
            seq.delta({"type": "response.reasoning_summary_text.delta", **common, "delta": piece})
        seq.add({"type": "response.reasoning_summary_text.done", **common, "text": text})
        seq.add({"type": "response.reasoning_summary_part.done", **common, "part": _summary(text)})
        summary.append(_summary(text))
    item = {"id": item_id, "type": "reasoning", "summary": summary, **sealed}
    seq.add({"type": "response.output_item.done", "output_index": index, "item": item})
    tokens = _HIDDEN_REASONING_TOKENS + sum(model.count_tokens(s["text"]) for s in summary)
    return item, tokens


def _summary(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def _function_call(seq: _Seq, index: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    item_id, call_id = new_id("fc"), new_id("call")
    arguments = json.dumps(args)
    added = {
        "id": item_id,
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": call_id,
        "name": name,
    }
    seq.add({"type": "response.output_item.added", "output_index": index, "item": added}, output=True)
    common = {"item_id": item_id, "output_index": index}
    for piece in model.split_deltas(arguments):
        seq.delta({"type": "response.function_call_arguments.delta", **common, "delta": piece})
    seq.add({"type": "response.function_call_arguments.done", **common, "arguments": arguments, "name": name})
    item = dict(added, status="completed", arguments=arguments)
    seq.add({"type": "response.output_item.done", "output_index": index, "item": item})
    return item


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message(seq: _Seq, index: int, text: str, kind: str, limit: int | None) -> dict[str, Any]:
    """§2.2 (text) or §2.6 (refusal); ``limit`` truncates the deltas (max_output_tokens)."""
    item_id = new_id("msg")
    added = {"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
    seq.add({"type": "response.output_item.added", "output_index": index, "item": added}, output=True)
    common = {"item_id": item_id, "output_index": index, "content_index": 0}
    seq.add({"type": "response.content_part.added", **common, "part": _part(kind, "")})
    sent = []
    used = 0
    for piece in model.split_deltas(text):
        if limit is not None and used + len(piece) > limit:
            break
        used += len(piece)
        sent.append(piece)
        if kind == "refusal":
            seq.delta({"type": "response.refusal.delta", **common, "delta": piece})
        else:
            seq.delta({"type": "response.output_text.delta", **common, "delta": piece, "logprobs": []})
    final_text = "".join(sent)
    status = "completed" if final_text == text else "incomplete"
    if kind == "refusal":
        seq.add({"type": "response.refusal.done", **common, "refusal": final_text})
    else:
        seq.add({"type": "response.output_text.done", **common, "text": final_text, "logprobs": []})
    part = _part(kind, final_text)
    seq.add({"type": "response.content_part.done", **common, "part": part})
    item = dict(added, status=status, content=[part])
    seq.add({"type": "response.output_item.done", "output_index": index, "item": item})
    return item


def failure_tail(
    turn: Turn, *, code: str, message: str, nested_error: bool, error_type: str | None = None
) -> list[dict[str, Any]]:
    """Events that end a started response with ``response.failed`` (§2.7).

    On SSE the real wire puts a nested ``error`` event first (§2.7, B3); WS sends only ``response.failed``.
    """
    events: list[dict[str, Any]] = []
    if nested_error:
        events.append(
            {"type": "error", "error": error_body(message, type_=error_type or code, code=code, param=None)}
        )
    failed = dict(turn.base, status="failed", error={"code": code, "message": message}, output=[])
    events.append({"type": "response.failed", "response": failed})
    return events


def scripted_turn(script: list[dict[str, Any]], conversation: list[dict[str, Any]]) -> Turn:
    """A turn that sends exactly ``script`` (the sender still numbers and tags each event).

    The Codex-style scripted mode (PROTOCOL.md, checklist "Observability"): tests can send events the model
    never would (``response.done``, unknown types, odd orders). If the script ends with a terminal event that
    carries a ``response`` with an ``id``, that response is remembered like a generated one.
    """
    events = [{k: v for k, v in e.items() if k != "sequence_number"} for e in script]
    terminal = next(
        (
            e["response"]
            for e in reversed(events)
            if isinstance(e.get("response"), dict) and "status" in e["response"]
        ),
        {},
    )
    first = next((e["response"] for e in events if isinstance(e.get("response"), dict)), terminal)
    return Turn(
        response_id=str(terminal.get("id") or first.get("id") or new_id("resp")),
        events=events,
        delays=[0.0] * len(events),
        response=terminal,
        base=first,
        items=conversation + list(terminal.get("output") or []),
    )
