"""Save a conversation chain to a file and load it back (pure, no network; :func:`write`/:func:`read` touch disk).

Two forms:

* **JSON** (:func:`to_json`): a versioned document that :func:`from_json` / :func:`load_into` turn back into a
  :class:`~ipy_responses_ws.chain.Chain`, so a conversation can go on in another kernel or another day::

      {"format": "ipy_responses_ws.conversation", "version": 1, "exported_at": "2026-12-07T06:30:00Z",
       "chain": "default", "previous_response_id": "resp_...", "store": true, "model": "gpt-5-2025-08-07",
       "transport": "ws", "turns": 3, "transcript": [...input items...], "pending_calls": [...],
       "carry": [...], "cells": [{"cell_id": "...", "turn": 1}, ...], "meta": {...}}

  ``pending_calls`` are the last answer's function calls still waiting for outputs, ``carry`` the outputs owed
  for them (sent first by the next turn), ``cells`` which notebook cell started each turn of the active branch
  (information only: a loaded chain starts with no cell history, so re-running a cell after a load continues
  the conversation instead of forking it).

* **Markdown** (:func:`to_markdown`): a transcript to read or share (``## User`` / ``## Assistant``, tool calls
  as fenced code); it cannot be loaded back.

What a loaded chain sends next follows :meth:`Chain.plan`'s table: ``store=true`` chains by the saved
``previous_response_id`` (the server kept the conversation, if it still has it: a ``previous_response_not_found``
makes the session resend the transcript); ``store=false`` resends the transcript, because the id lived only in
a connection's cache, gone with it. The loaded chain has no ``connection_id``.

Nothing but the conversation is written: no settings, headers, base URL or key. The document holds the chain's
transcript, which holds what the user and the model said; a secret pasted into a prompt is in it, as in the
notebook.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .chain import Chain
from .errors import ConfigError

__all__ = [
    "FORMAT",
    "VERSION",
    "ConversationFormatError",
    "to_json",
    "to_markdown",
    "validate",
    "from_json",
    "load_into",
    "write",
    "read",
]

FORMAT = "ipy_responses_ws.conversation"
VERSION = 1
# previous_response_id of a loaded transcript that came without one (hand-written): never sent, because the
# loaded chain is marked store=false and no socket caches this id (the turn passes same_connection only when
# the socket's cached response id equals the chain's), so plan() resends the transcript.
UNSAVED_ID = "resp_unsaved_transcript"
_SUFFIXES = {".json": "json", ".md": "markdown", ".markdown": "markdown"}


class ConversationFormatError(ConfigError):
    """A conversation file or document cannot be read or written; ``.field`` names the bad part, if one."""

    default_hint = "Load a .json file written by ipy_responses_ws.export.write."

    def __init__(
        self, message: str = "", *, field: str | None = None, path: str | None = None, hint: str | None = None
    ) -> None:
        self.field = field
        self.path = path
        super().__init__(message, hint=hint)


# --- JSON -----------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any, where: str) -> Any:
    """A JSON-safe deep copy of *value* (the document must not share lists with the live chain)."""
    try:
        return json.loads(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise ConversationFormatError(f"{where} cannot be written as JSON: {exc}.", field=where) from None


def to_json(chain: Chain, *, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The versioned JSON document of *chain* (module docstring); *meta* is the caller's, kept as given.

    Attributes are read with ``getattr`` and defaults, so a chain-like object without the newer ones
    (``carry``, ``marks``) exports too.
    """
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _now(),
        "chain": getattr(chain, "name", "default"),
        "previous_response_id": getattr(chain, "previous_response_id", None),
        "store": getattr(chain, "last_store", None),
        "model": getattr(chain, "last_model", None),
        "transport": getattr(chain, "last_transport", None),
        "turns": int(getattr(chain, "turns", 0) or 0),
        "transcript": _plain(list(getattr(chain, "transcript", []) or []), "transcript"),
        "pending_calls": [str(c) for c in getattr(chain, "pending_calls", []) or []],
    }
    carry = list(getattr(chain, "carry", None) or [])
    if carry:
        doc["carry"] = _plain(carry, "carry")
    cells = [
        {"cell_id": str(cell), "turn": int(state.get("turns", 0)) + 1}
        for cell, state in getattr(chain, "marks", None) or []
        if isinstance(state, Mapping)
    ]
    if cells:
        doc["cells"] = cells
    if meta:
        doc["meta"] = _plain(dict(meta), "meta")
    return doc


def _field(data: Mapping[str, Any], name: str, kinds: tuple[type, ...], default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None or (isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)):
        return value
    want = " or ".join(k.__name__ for k in kinds)
    raise ConversationFormatError(
        f"The conversation's {name!r} is {value!r}, not {want}.", field=name, hint="Fix or remove that field."
    )


def validate(data: Any) -> dict[str, Any]:
    """*data* if it is a conversation document this version can load; else :class:`ConversationFormatError`."""
    if not isinstance(data, Mapping):
        raise ConversationFormatError(f"A conversation document is a JSON object, not {type(data).__name__}.")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise ConversationFormatError(
            f"This is not an ipy_responses_ws conversation: its format is {fmt!r}, expected {FORMAT!r}.",
            field="format",
        )
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConversationFormatError(
            f"The conversation's version is {version!r}, not a version number.", field="version"
        )
    if version > VERSION:
        raise ConversationFormatError(
            f"This conversation was saved in format version {version} by a newer ipy_responses_ws; this one "
            f"reads version {VERSION}.",
            field="version",
            hint="Upgrade ipy_responses_ws (pip install -U ipy_responses_ws), then load it again.",
        )
    if "transcript" not in data:
        raise ConversationFormatError(
            "The conversation has no 'transcript': there is nothing to continue from.", field="transcript"
        )
    transcript = data["transcript"]
    if not isinstance(transcript, list) or not all(isinstance(it, Mapping) for it in transcript):
        raise ConversationFormatError(
            "The conversation's 'transcript' must be a list of input items (JSON objects).",
            field="transcript",
        )
    for i, item in enumerate(transcript):
        if "type" not in item and "role" not in item:
            raise ConversationFormatError(
                f"transcript[{i}] has neither 'type' nor 'role': it is not a Responses API input item.",
                field=f"transcript[{i}]",
            )
    _field(data, "previous_response_id", (str,))
    _field(data, "store", (bool,))
    _field(data, "model", (str,))
    _field(data, "transport", (str,))
    _field(data, "chain", (str,))
    turns = _field(data, "turns", (int,))
    if turns is not None and turns < 0:
        raise ConversationFormatError(f"The conversation's 'turns' is {turns}, below 0.", field="turns")
    pending = data.get("pending_calls") or []
    if not isinstance(pending, list) or not all(isinstance(c, str) for c in pending):
        raise ConversationFormatError(
            "The conversation's 'pending_calls' must be a list of call ids.", field="pending_calls"
        )
    carry = data.get("carry") or []
    if not isinstance(carry, list) or not all(
        isinstance(it, Mapping) and it.get("type") == "function_call_output" for it in carry
    ):
        raise ConversationFormatError(
            "The conversation's 'carry' must be a list of function_call_output items.", field="carry"
        )
    return dict(data)


def load_into(chain: Chain, data: Any) -> Chain:
    """Replace *chain*'s conversation with the document *data* (validated first) and return *chain*.

    The chain is reset first (its ``epoch`` moves on, so a turn still running cannot commit into the loaded
    conversation). ``connection_id`` is None: no socket holds this conversation. A ``store=true`` document
    chains by its id; ``store=false`` (or unknown) resends the transcript (module docstring).
    """
    doc = validate(data)
    transcript = _plain(doc["transcript"], "transcript")
    chain.reset()
    chain.transcript = transcript
    chain.turns = doc.get("turns") if doc.get("turns") is not None else _count_user_turns(transcript)
    chain.last_model = doc.get("model")
    chain.last_transport = doc.get("transport")
    chain.pending_calls = list(doc.get("pending_calls") or [])
    rid = doc.get("previous_response_id")
    if rid is None and transcript:
        # A transcript without an id (hand-written, or cut from another tool): plan() must still resend it,
        # and it does so only for a chain that has a parent. Not stored, so the placeholder is never sent.
        chain.previous_response_id = UNSAVED_ID
        chain.last_store = False
    else:
        chain.previous_response_id = rid
        # Unknown store: assume not stored, so the next turn resends rather than trusts an id.
        chain.last_store = doc.get("store") is True
    chain.connection_id = None
    if hasattr(chain, "carry"):
        # Outputs owed for the pending calls: only those still pending (Chain.owe's rule).
        pending = set(chain.pending_calls)
        chain.carry = [it for it in _plain(doc.get("carry") or [], "carry") if it.get("call_id") in pending]
    return chain


def from_json(data: Any, *, name: str | None = None) -> Chain:
    """A new :class:`Chain` holding the conversation of document *data* (see :func:`load_into`).

    *name* overrides the saved chain name.
    """
    doc = validate(data)
    return load_into(Chain(name or doc.get("chain") or "default"), doc)


def _count_user_turns(transcript: list[dict[str, Any]]) -> int:
    return sum(1 for it in transcript if it.get("role") == "user")


# --- Markdown -------------------------------------------------------------------------------------------


def _fence(text: str, lang: str = "") -> str:
    """*text* in a code fence longer than any backtick run inside it (CommonMark §4.5)."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.rstrip(chr(10))}\n{ticks}"


def _content_text(content: Any) -> str:
    """The readable text of a message's content: a string, or a list of parts (images and files named)."""
    if isinstance(content, str):
        return content
    bits: list[str] = []
    for part in content or ():
        if not isinstance(part, Mapping):
            continue
        ptype = part.get("type")
        if ptype in ("input_text", "output_text", "text"):
            bits.append(str(part.get("text") or ""))
        elif ptype == "refusal":
            bits.append(f"*(refused)* {part.get('refusal') or ''}")
        elif ptype == "input_image":
            bits.append("*(image)*")
        elif ptype == "input_file":
            bits.append(f"*(file{': ' + str(part['filename']) if part.get('filename') else ''})*")
    return "\n\n".join(b for b in bits if b)


def _arguments(raw: Any) -> tuple[str, str]:
    """Function-call arguments pretty-printed when they are JSON, as given otherwise: (text, fence language)."""
    if isinstance(raw, str):
        try:
            return json.dumps(json.loads(raw), indent=2, ensure_ascii=False), "json"
        except ValueError:
            return raw, ""
    return json.dumps(raw, indent=2, ensure_ascii=False), "json"


def _item_markdown(item: Mapping[str, Any]) -> str | None:
    itype = item.get("type")
    role = item.get("role")
    if itype in ("message", None) and role:
        title = {"user": "User", "assistant": "Assistant", "system": "System", "developer": "Developer"}
        return f"## {title.get(str(role), str(role).title())}\n\n{_content_text(item.get('content')).strip()}"
    if itype == "function_call":
        args, lang = _arguments(item.get("arguments") or "")
        call = f" (`{item['call_id']}`)" if item.get("call_id") else ""
        return f"### Tool call: `{item.get('name')}`{call}\n\n{_fence(args, lang)}"
    if itype == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False)
        call = f" (`{item['call_id']}`)" if item.get("call_id") else ""
        return f"### Tool output{call}\n\n{_fence(text)}"
    if itype == "reasoning":
        summary = " ".join(
            str(s.get("text") or "") for s in item.get("summary") or () if isinstance(s, Mapping)
        ).strip()
        return f"> *Reasoning:* {summary}" if summary else None
    if itype == "item_reference":
        return f"> *(item `{item.get('id')}`, kept on the server)*"
    return f"> *({itype} item)*" if itype else None


def to_markdown(chain: Chain) -> str:
    """A readable transcript of *chain*: a header (name, model, last response id) then one section per item."""
    name = getattr(chain, "name", "default")
    facts = [
        ("Model", getattr(chain, "last_model", None)),
        ("Last response", getattr(chain, "previous_response_id", None)),
        ("Turns", getattr(chain, "turns", None)),
        ("Stored on the server", getattr(chain, "last_store", None)),
        ("Exported", _now()),
    ]
    lines = [f"# Conversation `{name}`", ""]
    for label, value in facts:
        if value is not None:
            shown = ("yes" if value else "no") if isinstance(value, bool) else f"`{value}`"
            lines.append(f"- {label}: {shown}")
    parts = ["\n".join(lines)]
    for item in getattr(chain, "transcript", None) or ():
        if isinstance(item, Mapping):
            block = _item_markdown(item)
            if block:
                parts.append(block)
    carry = [it for it in getattr(chain, "carry", None) or () if isinstance(it, Mapping)]
    for item in carry:
        block = _item_markdown(item)
        if block:
            parts.append(block.replace("### Tool output", "### Tool output (to send with the next turn)", 1))
    owed = {it.get("call_id") for it in carry}
    pending = [c for c in getattr(chain, "pending_calls", None) or () if c not in owed]
    if pending:
        ids = ", ".join(f"`{c}`" for c in pending)
        parts.append(f"> *Waiting for tool outputs: {ids}*")
    return "\n\n".join(parts) + "\n"


# --- files ----------------------------------------------------------------------------------------------


def _kind(path: Path) -> str:
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConversationFormatError(
            f"Cannot tell how to write {path.name!r}: its suffix {path.suffix or '(none)'!r} is neither "
            "'.json' (a conversation to load later) nor '.md' (a transcript to read).",
            path=str(path),
            hint="Name the file with a .json or .md suffix.",
        )
    return kind


def write(path: str | os.PathLike[str], chain: Chain, *, meta: Mapping[str, Any] | None = None) -> Path:
    """Save *chain* to *path*: JSON for ``.json``, Markdown for ``.md``; returns the path written.

    The file is replaced whole (written beside it, then renamed), so a failure never leaves half a file.
    """
    target = Path(path).expanduser()
    if _kind(target) == "json":
        text = json.dumps(to_json(chain, meta=meta), indent=2, ensure_ascii=False) + "\n"
    else:
        text = to_markdown(chain)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated conversation document in the JSON file *path* (pass it to :func:`from_json`).

    A missing file raises ``FileNotFoundError``; anything else wrong raises :class:`ConversationFormatError`.
    """
    source = Path(path).expanduser()
    if _kind(source) != "json":
        raise ConversationFormatError(
            f"{source.name!r} is a Markdown transcript, for reading only: it cannot be loaded back.",
            path=str(source),
            hint="Load the .json export of the conversation instead.",
        )
    text = source.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversationFormatError(
            f"{source.name!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            path=str(source),
        ) from None
    return validate(data)
