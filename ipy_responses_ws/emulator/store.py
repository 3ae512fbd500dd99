"""Where finished responses live: the persisted store (``store=true``) and per-connection lane caches.

PROTOCOL.md §1.7: each WS connection keeps the latest response **per lane** in memory (it works with
``store=false``); a cache miss falls back to the persisted store only for responses stored with
``store=true``. The persisted store is shared by HTTP and WS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .builder import Turn

__all__ = ["LaneCache", "Record", "ResponseStore"]


@dataclass(frozen=True)
class Record:
    """A finished response plus the conversation items a continuation builds on."""

    response: dict[str, Any]
    items: list[dict[str, Any]]
    tokens: int  # input + output tokens: what a continuation from the cache reports as cached

    @classmethod
    def from_turn(cls, turn: Turn) -> Record:
        usage = turn.response.get("usage") or {}
        return cls(response=turn.response, items=turn.items, tokens=int(usage.get("total_tokens", 0)))

    @property
    def id(self) -> str:
        return self.response["id"]


class ResponseStore:
    """The persisted store (thread-safe: tests read it from their own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._items: dict[str, dict[str, Any]] = {}  # output items of stored responses, by item id

    def put(self, record: Record) -> None:
        with self._lock:
            self._records[record.id] = record
            for item in record.response.get("output") or ():
                if isinstance(item, dict) and item.get("id"):
                    self._items[item["id"]] = item

    def get(self, response_id: str) -> Record | None:
        with self._lock:
            return self._records.get(response_id)

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An output item of a stored response (what an ``item_reference`` or a bare id resolves to)."""
        with self._lock:
            return self._items.get(item_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


class LaneCache:
    """One connection's cache: the latest record per lane (``None`` is the default lane)."""

    def __init__(self) -> None:
        self._latest: dict[str | None, Record] = {}

    def put(self, lane: str | None, record: Record) -> None:
        self._latest[lane] = record

    def find(self, response_id: str) -> tuple[str | None, Record] | None:
        """The lane holding ``response_id`` and its record, or None on a miss."""
        for lane, record in self._latest.items():
            if record.id == response_id:
                return lane, record
        return None

    def evict(self, response_id: str) -> None:
        for lane, record in list(self._latest.items()):
            if record.id == response_id:
                del self._latest[lane]

    def clear(self) -> None:
        self._latest.clear()
