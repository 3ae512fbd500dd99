"""The conversation chain: what to send next, and a client-side transcript (pure, no I/O).

A :class:`Chain` remembers the ``previous_response_id`` of its last *completed* response and a transcript
of every input and output item of its completed turns (DESIGN.md §4). Per turn, :meth:`Chain.plan` decides
between two request shapes, never a mix of both (sending history together with ``previous_response_id``
duplicates the context, PRIOR-ART.md §3.1):

* **by id**: only the new items + ``previous_response_id``;
* **full**: the whole transcript + the new items, no ``previous_response_id``.

The decision table (also in docs/design.md):

===============================================  ==========================================================
situation                                        request
===============================================  ==========================================================
first turn / after reset                         new items only, no id
``force_full`` (``previous_response_not_found``)  full transcript (Notice "resend")
parent stored (``store=true``)                   by id, on either transport (one shared store, §3)
parent not stored, WS, same connection           by id (the connection-local cache holds it, §1.7)
parent not stored, SSE                           full transcript (HTTP has no connection cache)
parent not stored, WS, another connection        full transcript (the cache was per connection)
===============================================  ==========================================================

Only :meth:`Chain.commit` advances the chain, and the session calls it only after ``response.completed``:
interrupted, failed and incomplete turns never become the base of the next turn.

Output items are turned back into input items for the transcript (:func:`output_to_input`):

* ``message`` → ``{"type":"message","role":"assistant","content": <text>}`` (ids and statuses dropped: under
  ``store=false`` the server rejects ids it never persisted); a refusal keeps its refusal text;
* ``function_call`` → ``{"type":"function_call","call_id","name","arguments"}``;
* ``reasoning`` with ``encrypted_content`` → kept (summary + encrypted content, no id); without it → kept as
  a reference by id only when the parent was stored, dropped under ``store=false`` (the server cannot
  resolve it);
* other item types (server tools) → ``item_reference`` by id when stored, dropped otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Chain", "TurnPlan", "user_message", "output_to_input", "output_text", "paragraph_break"]


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """What one turn sends: ``input`` and ``previous_response_id`` (never both history and an id)."""

    input: list[dict[str, Any]]
    previous_response_id: str | None
    full_resend: bool
    reason: str | None
    transport: str | None = None
    store: bool | None = None
    trimmed: int = 0  # earlier turns left out of a resent transcript (Settings.max_turns)


def user_message(text: str, parts: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The input item for a user prompt, with *parts* (``input_image`` / ``input_file``) after its text."""
    content = [{"type": "input_text", "text": text}] if text or not parts else []
    return {"type": "message", "role": "user", "content": [*content, *parts]}


def paragraph_break(text: str) -> str:
    """What goes between the text so far and a further message item: a blank line, as the live view shows."""
    if not text or text.endswith("\n\n"):
        return ""
    return "\n" if text.endswith("\n") else "\n\n"


def output_text(response: dict[str, Any]) -> str:
    """The ``output_text`` of every assistant message in a Response object.

    Several message items (e.g. commentary and final-answer phases) stay separate paragraphs, joined the
    way ``render.TurnState`` shows them live, so the saved answer reads like the one the user watched.
    """
    text = ""
    messages = 0
    for item in response.get("output") or ():
        if isinstance(item, dict) and item.get("type") == "message":
            if messages:
                text += paragraph_break(text)
            messages += 1
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    text += part.get("text") or ""
    return text


def output_to_input(item: dict[str, Any], *, stored: bool) -> dict[str, Any] | None:
    """The input item that replays an output *item*, or None to drop it (rules in the module docstring)."""
    itype = item.get("type")
    if itype == "message":
        texts: list[str] = []
        for part in item.get("content") or ():
            if not isinstance(part, dict):
                continue
            if part.get("type") == "output_text":
                texts.append(part.get("text") or "")
            elif part.get("type") == "refusal":
                texts.append(part.get("refusal") or "")
        return {"type": "message", "role": item.get("role") or "assistant", "content": "".join(texts)}
    if itype == "function_call":
        return {
            "type": "function_call",
            "call_id": item.get("call_id"),
            "name": item.get("name"),
            "arguments": item.get("arguments") or "",
        }
    if itype == "reasoning":
        if item.get("encrypted_content"):
            return {
                "type": "reasoning",
                "summary": item.get("summary") or [],
                "encrypted_content": item["encrypted_content"],
            }
        if stored and item.get("id"):
            return {"type": "item_reference", "id": item["id"]}
        return None
    if stored and item.get("id"):
        return {"type": "item_reference", "id": item["id"]}
    return None


def _without_calls(items: list[dict[str, Any]], call_ids: set[str]) -> list[dict[str, Any]]:
    """*items* minus the ``function_call`` items of *call_ids* and the reasoning item right before each.

    A reasoning item must be followed by the item it produced, so it goes with its call.
    """
    if not call_ids:
        return list(items)
    out: list[dict[str, Any]] = []
    for item in items:
        if item.get("type") == "function_call" and item.get("call_id") in call_ids:
            if out and _is_reasoning(out[-1]):
                out.pop()
            continue
        out.append(item)
    return out


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and item.get("role") == "user"


def last_turns(items: list[dict[str, Any]], max_turns: int | None) -> tuple[list[dict[str, Any]], int]:
    """(the last *max_turns* turns of *items*, how many turns were left out); a turn starts at a user message.

    Cutting at a user message keeps every function call with its output: both come after the message of the
    turn that asked, or both were cut.
    """
    if max_turns is None:
        return items, 0
    starts = [i for i, it in enumerate(items) if _is_user_message(it)]
    if len(starts) <= max_turns:
        return items, 0
    return items[starts[len(starts) - max_turns] :], len(starts) - max_turns


def _is_reasoning(item: dict[str, Any]) -> bool:
    if item.get("type") == "reasoning":
        return True
    return item.get("type") == "item_reference" and str(item.get("id") or "").startswith("rs_")


class Chain:
    """One named conversation. Pure state; the session serializes its turns with a lock."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.epoch = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next turn starts a new conversation.

        ``epoch`` counts resets, so a turn that was already running when the chain was reset can tell
        that it must not commit into the new conversation.
        """
        self.epoch = getattr(self, "epoch", 0) + 1
        self.previous_response_id: str | None = None
        self.transcript: list[dict[str, Any]] = []
        self.turns = 0
        self.last_transport: str | None = None
        self.last_store: bool | None = None
        # Opaque id of the WS connection that served the last completed turn (set by the session) -
        # the pool hands it back to this chain when idle, so store=false can chain through its cache.
        self.connection_id: str | None = None
        self.last_model: str | None = None
        # call_ids of the function calls the last completed response made. The next turn must answer each
        # with a function_call_output, or the real API rejects a by-id request ("No tool output found").
        self.pending_calls: list[str] = []
        # function_call_output items owed for pending_calls whose turn ended before it could send them (an
        # interrupted tool, a failed step, the step limit): the next turn sends them first (:meth:`owed`).
        self.carry: list[dict[str, Any]] = []
        # The active branch: for each completed turn started by a notebook cell, (cell id, the chain's state
        # just before it). Re-running that cell rewinds to that state (:meth:`rewind_for`): a fork.
        self.marks: list[tuple[str, dict[str, Any]]] = []
        self.forks = 0  # how many times a re-run cell forked the conversation

    _STATE = (
        "previous_response_id",
        "transcript",
        "turns",
        "last_transport",
        "last_store",
        "connection_id",
        "last_model",
        "pending_calls",
        "carry",
    )

    def save(self) -> dict[str, Any]:
        """The state a turn starts from (cheap: lists are copied, their items shared; items are never mutated)."""
        state = {key: getattr(self, key) for key in self._STATE}
        for key in ("transcript", "pending_calls", "carry"):
            state[key] = list(state[key])
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        for key in self._STATE:
            value = state[key]
            setattr(self, key, list(value) if isinstance(value, list) else value)

    def cell_turn(self, cell_id: str) -> int | None:
        """The turn number (1-based) of the active branch that *cell_id* started, if any."""
        for cell, state in self.marks:
            if cell == cell_id:
                return int(state["turns"]) + 1
        return None

    def branch_from(self, cell_id: str) -> Chain | None:
        """For a re-run of *cell_id*: a copy of this chain as it was before that cell's turn, or None when the
        cell has no turn on the active branch (the new turn then continues from the tail, as always).

        The turn plans and commits on the copy; only a completed turn makes it the chain (:meth:`adopt`), so
        a failed re-run leaves the conversation as it was.
        """
        for index, (cell, state) in enumerate(self.marks):
            if cell == cell_id:
                fork = Chain(self.name)
                fork.epoch = self.epoch
                fork._restore(state)
                fork.marks = self.marks[:index]
                fork.forks = self.forks + 1
                return fork
        return None

    def adopt(self, fork: Chain) -> None:
        """Make *fork* (from :meth:`branch_from`, now committed) the active branch."""
        self._restore(fork.save())
        self.marks = list(fork.marks)
        self.forks = fork.forks

    def mark(self, cell_id: str, before: dict[str, Any]) -> None:
        """Record that the turn just committed came from *cell_id* and started from *before*."""
        self.marks.append((cell_id, before))

    def owe(self, outputs: list[dict[str, Any]]) -> None:
        """Remember *outputs* (``function_call_output`` items) for pending calls, to send with the next turn.

        Outputs for calls that are not pending (a reset happened, or the step that asked never completed) are
        ignored: answering a call the chain's parent did not make is a 400 too.
        """
        pending = set(self.pending_calls)
        have = {it.get("call_id") for it in self.carry}
        for item in outputs:
            cid = item.get("call_id")
            if cid in pending and cid not in have:
                self.carry.append(dict(item))
                have.add(cid)

    def owed(self, new_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The carried outputs that *new_items* do not answer themselves, to go first in the next request."""
        if not self.carry:
            return []
        answered = {it.get("call_id") for it in new_items if it.get("type") == "function_call_output"}
        return [it for it in self.carry if it.get("call_id") not in answered]

    def continue_from(self, other: Chain) -> None:
        """Take over *other*'s conversation, whole (a new session after ``%responses close``).

        Everything the next turn's plan depends on comes along, ``pending_calls`` included (without them the
        next turn would chain by id past calls that never got an output: the API answers 400 "No tool output
        found"). Not the connection: it belonged to the closed session, so under ``store=false`` the next turn
        resends the transcript, visibly (DESIGN.md §4).
        """
        self.previous_response_id = other.previous_response_id
        self.transcript = list(other.transcript)
        self.turns = other.turns
        self.last_transport = other.last_transport
        self.last_store = other.last_store
        self.last_model = other.last_model
        self.pending_calls = list(other.pending_calls)
        self.carry = [dict(it) for it in other.carry]
        self.marks = list(other.marks)
        self.forks = other.forks
        self.connection_id = None

    def plan(
        self,
        new_input_items: list[dict[str, Any]],
        *,
        transport: str,
        store: bool,
        same_connection: bool,
        force_full: bool = False,
        foreign_id: bool = False,
        max_turns: int | None = None,
    ) -> TurnPlan:
        """Decide what this turn sends (table in the module docstring).

        *foreign_id*: the parent id was issued over the other transport by a server whose ids do not cross
        transports (a gateway that mints its own): resend instead of chaining by it. *max_turns*: a resent
        transcript keeps only that many earlier turns (each starts at a user message).
        """
        new_items = list(new_input_items)
        if self.previous_response_id is None:
            return TurnPlan(new_items, None, False, None, transport, store)
        if force_full:
            # The server lost the parent, so it lost the parent's items too: no references to them.
            why = "previous response not found on the server"
            return self._full(new_items, why, transport, store, max_turns, references=False)
        if foreign_id:
            why = f"this server's {self.last_transport} response ids are not valid over {transport}"
            return self._full(new_items, why, transport, store, max_turns, references=False)
        unanswered = self.unanswered_calls(new_items)
        if unanswered:
            # Chaining by id would leave these calls without outputs (PRIOR-ART.md livekit #5094): resend the
            # conversation without them instead (the user moved on; _full leaves them out).
            why = f"the previous turn's function calls got no output ({', '.join(unanswered)}): left out"
            return self._full(new_items, why, transport, store, max_turns)
        if self.last_store:
            return TurnPlan(new_items, self.previous_response_id, False, None, transport, store)
        if transport == "ws" and same_connection and self.last_transport == "ws":
            return TurnPlan(new_items, self.previous_response_id, False, None, transport, store)
        if transport != "ws":
            why = "store=false and the SSE transport has no connection cache"
        elif self.last_transport != "ws":
            why = "store=false and the previous turn was served over SSE"
        else:
            why = "store=false and the WebSocket connection changed"
        return self._full(new_items, why, transport, store, max_turns)

    def unanswered_calls(self, new_items: list[dict[str, Any]]) -> list[str]:
        """The pending call ids that *new_items* do not answer with a ``function_call_output``."""
        answered = {it.get("call_id") for it in new_items if it.get("type") == "function_call_output"}
        return [c for c in self.pending_calls if c not in answered]

    def _full(
        self,
        new_items: list[dict[str, Any]],
        why: str,
        transport: str,
        store: bool,
        max_turns: int | None,
        *,
        references: bool = True,
    ) -> TurnPlan:
        history = _without_calls(self.transcript, set(self.unanswered_calls(new_items)))
        if not references:
            history = [it for it in history if it.get("type") != "item_reference"]
        history, trimmed = last_turns(history, max_turns)
        return TurnPlan([*history, *new_items], None, bool(history), why, transport, store, trimmed)

    def commit(
        self,
        plan: TurnPlan,
        new_input_items: list[dict[str, Any]],
        response: dict[str, Any],
        *,
        connection_id: str | None = None,
    ) -> None:
        """Advance the chain after ``response.completed`` (never call it for other outcomes)."""
        if response.get("status", "completed") != "completed":
            raise ValueError("only a completed response may advance the chain")
        stored = bool(response.get("store", plan.store if plan.store is not None else True))
        # Calls this turn left unanswered were left out of its request: leave them out for good.
        self.transcript = _without_calls(self.transcript, set(self.unanswered_calls(new_input_items)))
        self.transcript.extend(new_input_items)
        self.pending_calls = []
        self.carry = []
        for item in response.get("output") or ():
            if isinstance(item, dict):
                replay = output_to_input(item, stored=stored)
                if replay is not None:
                    self.transcript.append(replay)
                if item.get("type") == "function_call" and item.get("call_id"):
                    self.pending_calls.append(str(item["call_id"]))
        self.previous_response_id = response.get("id")
        self.turns += 1
        self.last_transport = plan.transport
        self.last_store = stored
        self.connection_id = connection_id
        self.last_model = response.get("model")

    def history(self) -> list[tuple[str, str]]:
        """``(role, text)`` pairs of the transcript's messages, for display."""
        return [(role, text) for _cell, role, text in self.cell_history()]

    def cell_history(self) -> list[tuple[str | None, str, str]]:
        """``(cell id, role, text)`` for the active branch's messages; the cell that started each turn (None for
        turns without one: terminal IPython, the Python API)."""
        starts = {len(state["transcript"]): cell for cell, state in self.marks}
        out: list[tuple[str | None, str, str]] = []
        cell: str | None = None
        asked = False  # the current turn's user message was seen: another one starts a turn without a cell
        for index, item in enumerate(self.transcript):
            if index in starts:
                cell, asked = starts[index], False
            if _is_user_message(item):
                if asked:
                    cell = None
                asked = True
            if item.get("type") not in ("message", None) or "role" not in item:
                if item.get("type") == "function_call":
                    out.append((cell, "tool", f"{item.get('name')}({item.get('arguments')})"))
                continue
            content = item.get("content")
            if isinstance(content, str):
                text = content
            else:
                text = "".join(
                    p.get("text") or p.get("refusal") or ""
                    for p in content or ()
                    if isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "refusal")
                )
            out.append((cell, item["role"], text))
        return out

    def snapshot(self) -> dict[str, Any]:
        """A small status dict (for ``ResponsesSession.status()``)."""
        return {
            "turns": self.turns,
            "previous_response_id": self.previous_response_id,
            "transport": self.last_transport,
            "store": self.last_store,
            "items": len(self.transcript),
            # Only when there are some: function calls of the last answer still waiting for tool_outputs.
            **({"pending_calls": list(self.pending_calls)} if self.pending_calls else {}),
        }

    def __repr__(self) -> str:
        return f"Chain({self.name!r}, turns={self.turns}, previous_response_id={self.previous_response_id!r})"
