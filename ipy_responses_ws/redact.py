"""Secrets out of every text a user, a log or a saved notebook can hold (pure: no I/O, no imports of ours).

Three kinds of secret travel with a request (DESIGN.md §6):

* the API key (``Authorization: Bearer …``);
* a gateway key in the base URL's query (``…/v1?api-version=x&api-key=…``, ``?key=``, ``?sig=``, a SAS
  ``sig``/``signature``, an OAuth ``code``/``access_token``): :func:`is_secret_param` decides which names count;
* the values of custom headers (``extra_headers``: Azure's ``api-key``, a gateway's ``x-api-key``).

Two layers, so that a message built anywhere comes out clean:

* **by value**: :func:`register_secret` remembers a secret for the life of the process (memory only);
  ``Settings`` registers the key, the secret query values and the header values when it hands them to a
  transport, and :func:`redact` replaces every registered value;
* **by shape**: :func:`redact` also replaces any ``Bearer <token>`` and the value of any key-like query parameter
  in any URL it finds, registered or not, and :func:`redact_url` does it for one URL (plus a password in
  ``user:password@``).

``errors.py`` runs every message and text field through :func:`redact` at construction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "MASK",
    "is_secret_param",
    "redact",
    "redact_url",
    "register_secret",
    "secret_query_values",
]

REDACTED = "[REDACTED]"
#: What stands for a secret inside a URL or a repr (short, and the same everywhere).
MASK = "***"

# Query parameter names that carry credentials (compared lowercased, with "-" read as "_").
_SECRET_NAMES = frozenset(
    {
        "key",
        "apikey",
        "api_key",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "auth",
        "authorization",
        "code",
        "sig",
        "signature",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "credential",
        "credentials",
        "session",
        "subscription_key",
        "x_api_key",
        "x_amz_signature",
        "x_amz_security_token",
        "x_amz_credential",
        "x_goog_signature",
        "x_goog_credential",
    }
)
_SECRET_SUFFIXES = ("_key", "_token", "_secret", "_signature", "_password", "_sig")

# A key-like parameter inside free text: `?name=value` or `&name=value`, value up to a delimiter. The name part
# is matched loosely here and checked with is_secret_param in the callback.
_QUERY_PARAM_RE = re.compile(r"([?&;])([A-Za-z0-9_.\-]+)=([^&#\s\"'<>;:,)\]]*)")
_USERINFO_RE = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@\"'<>]*):([^@/\s\"'<>]+)@")
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")

# Secrets seen in this process (memory only). Short strings are not registered: redacting "a" everywhere would
# mangle messages, and a real credential is never that short.
_SECRETS: set[str] = set()
_MIN_SECRET_LEN = 6


def is_secret_param(name: str) -> bool:
    """True when a URL query parameter called *name* carries a credential (``key``, ``api-key``, ``sig`` …)."""
    norm = name.strip().lower().replace("-", "_").replace(".", "_")
    return norm in _SECRET_NAMES or norm.endswith(_SECRET_SUFFIXES)


# Environment variables whose names say they hold a credential (``OPENAI_API_KEY``, ``GITHUB_TOKEN``, ``DB_PASSWORD``,
# ``AWS_SECRET_ACCESS_KEY``, ``GOOGLE_APPLICATION_CREDENTIALS`` …), besides the names is_secret_param knows.
_SECRET_ENV_RE = re.compile(r"(?i)(api_?key|token|secret|password|passwd|credential)")
_MIN_ENV_SECRET_LEN = 8


def environment_secrets(environ: Mapping[str, str]) -> list[str]:
    """The values of *environ*'s credential-looking variables (8 characters or more), to pass to :func:`redact`
    where text from user code leaves the kernel (a tool's output, a traceback in a prompt)."""
    return [
        value
        for name, value in environ.items()
        if len(value) >= _MIN_ENV_SECRET_LEN and (is_secret_param(name) or _SECRET_ENV_RE.search(name))
    ]


def register_secret(secret: str | None) -> None:
    """Remember *secret* so that every later :func:`redact` (hence every error message) hides it."""
    if secret and len(secret) >= _MIN_SECRET_LEN:
        _SECRETS.add(secret)


def secret_query_values(url: str) -> list[str]:
    """The values of the key-like query parameters of *url* (and a ``user:password@`` password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    values = [v for k, v in parse_qsl(parts.query, keep_blank_values=False) if is_secret_param(k)]
    if parts.password:
        values.append(parts.password)
    return values


def redact_url(url: str | None) -> str | None:
    """*url* with the values of key-like query parameters, and any password, replaced by ``***``.

    Everything else is kept as written (the host, the path, ``api-version``), so the URL still says where a
    request went. ``None`` stays ``None``.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_param(k) else v) for k, v in pairs], safe="*")
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    if query == parts.query and netloc == parts.netloc:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_param(m: re.Match[str]) -> str:
    sep, name, value = m.group(1), m.group(2), m.group(3)
    if value and is_secret_param(name):
        return f"{sep}{name}={MASK}"
    return m.group(0)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* with every secret replaced: registered values (and *secrets*) by ``[REDACTED]``, ``Bearer
    <token>`` by ``Bearer [REDACTED]``, key-like URL query values and URL passwords by ``***``."""
    if not text:
        return text
    if "=" in text:  # first, so a registered query value reads `key=***`, not `key=[REDACTED]`
        text = _QUERY_PARAM_RE.sub(_mask_param, text)
    for secret in (*secrets, *_SECRETS):
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    if "earer" in text or "EARER" in text:
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "@" in text:
        text = _USERINFO_RE.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return text
