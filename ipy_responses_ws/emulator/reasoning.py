"""Reasoning items sent back as input: ``encrypted_content`` and the errors the real API gives.

With ``include: ["reasoning.encrypted_content"]`` every reasoning output item carries an opaque
``encrypted_content`` string. The emulator signs it (HMAC-SHA256 with a secret made per emulator), so it
can tell later whether a client sent back a string it issued: a forged or foreign one gets the real
``invalid_encrypted_content`` error (openai/codex#8145, Wei-Shaw/sub2api#2863). Like a Fernet token, it
starts with ``gAAAAA``.

A reasoning item (or an ``item_reference``) sent back **without** encrypted content is looked up by id in
the persisted store; under ``store=false`` it was never persisted, and the real API answers HTTP 404
(router-for-me/CLIProxyAPI#2381, can1357/oh-my-pi#41)::

    {"error": {"message": "Item with id 'rs_…' not found. Items are not persisted when `store` is set to
     false. Try again with `store` set to true, or remove this item from your input.",
     "type": "invalid_request_error", "param": "input", "code": null}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
import time
from collections.abc import Callable
from typing import Any

from .wire import RequestError

__all__ = ["Sealer", "check_input_items"]

_VERSION = b"\x80"  # a Fernet token's first byte: its base64 starts with "gAAAAA"
_MAC = 32


class Sealer:
    """Issues and verifies ``encrypted_content`` strings with one secret (one per emulator)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def seal(self, item_id: str, summary_text: str) -> str:
        body = _VERSION + struct.pack(">Q", int(time.time()))
        body += json.dumps({"id": item_id, "summary": summary_text}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(body + self._mac(body)).decode()

    def verify(self, token: Any) -> bool:
        if not isinstance(token, str):
            return False
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except (binascii.Error, ValueError):
            return False
        body, mac = raw[:-_MAC], raw[-_MAC:]
        return body[:1] == _VERSION and hmac.compare_digest(mac, self._mac(body))

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()


def _abbrev(token: str) -> str:
    return f"{token[:4]}...{token[-4:]}" if len(token) > 12 else token


def check_input_items(
    items: list[dict[str, Any]],
    *,
    store: bool,
    sealer: Sealer,
    find_item: Callable[[str], dict[str, Any] | None],
) -> list[dict[str, Any]]:
    """Validate reasoning items and item references; return the items with references resolved.

    Raises :class:`RequestError` with the real API's status and wording on the first bad item.
    """
    out = []
    for item in items:
        kind = item.get("type")
        if kind == "reasoning" and "encrypted_content" in item and item["encrypted_content"] is not None:
            token = item["encrypted_content"]
            if not sealer.verify(token):
                raise RequestError(
                    400,
                    f"The encrypted content {_abbrev(str(token))} could not be verified. "
                    "Reason: Encrypted content could not be decrypted or parsed.",
                    code="invalid_encrypted_content",
                )
        elif kind in ("reasoning", "item_reference") and item.get("id"):
            stored = find_item(item["id"])
            if stored is None:
                message = f"Item with id '{item['id']}' not found."
                if not store:
                    message += (
                        " Items are not persisted when `store` is set to false. Try again with `store` set "
                        "to true, or remove this item from your input."
                    )
                raise RequestError(404, message, code=None, param="input")
            if kind == "item_reference":
                item = stored
        out.append(item)
    return out
