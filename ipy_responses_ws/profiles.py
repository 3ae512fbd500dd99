"""Named endpoint profiles: where a turn goes, which environment variable holds its key, how the key is sent.

A profile names variables, never values (DESIGN.md §6): ``key_env="XAI_API_KEY"``, and a header value written
``$NAME`` (or ``${NAME}``) is read from the environment when the request is made. Pure: no I/O beyond
``os.environ``, no aiohttp, no IPython.

Built in (users may override any field, or define more)::

    openai   the settings' base_url, else OPENAI_BASE_URL, else https://api.openai.com/v1; OPENAI_API_KEY (bearer)
    azure    https://RESOURCE.openai.azure.com/openai/v1 (``resource``, ``base_url`` or AZURE_OPENAI_ENDPOINT);
             AZURE_OPENAI_API_KEY sent as ``api-key``, or a bearer token from ``token_provider`` (Entra ID)
    xai      https://api.x.ai/v1; XAI_API_KEY (bearer); model grok-4

How a profile changes the settings (:func:`apply_profile`), precedence from strongest to weakest: a cell's own
options (``-m`` …) > the profile's fields > the session's settings (traits, ``%responses config``). A profile
with its own base URL does not inherit the session's ``api_key``, ``extra_headers``, ``organization`` or
``project``: they were meant for the session's endpoint, and must not travel to another provider.

Azure follows openai-python's ``AzureOpenAI`` (``lib/azure.py``): a token from ``azure_ad_token_provider``
wins and goes out as ``Authorization: Bearer``; else the key goes out as ``api-key``; the endpoint defaults to
``AZURE_OPENAI_ENDPOINT``. The provider is called for every connection and every SSE request, never stored.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .config import Settings, expand_env
from .errors import AuthenticationError, ConfigError
from .redact import redact

__all__ = [
    "AUTH_STYLES",
    "BUILTIN_PROFILES",
    "PROFILE_FIELDS",
    "Profile",
    "apply_profile",
    "expand_env",
    "name_key_variable",
    "parse_profile_field",
    "profile_table",
]

#: How the key is sent: ``Authorization: Bearer KEY`` (OpenAI, xAI, most gateways), ``api-key: KEY`` (Azure),
#: or not at all (a local server, a gateway that authenticates by its own header).
AUTH_STYLES = ("bearer", "api-key", "none")
#: The fields a profile has (``%responses config profile.NAME.FIELD=value``; ``token_provider`` is Python-only).
PROFILE_FIELDS = ("base_url", "resource", "key_env", "auth", "headers", "model", "token_provider")

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,39}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESOURCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,62}")


@dataclass(frozen=True, slots=True)
class Profile:
    """One endpoint: base URL, key variable, auth style, extra headers, default model.

    ``base_url=None`` means the session's own base URL (``OPENAI_BASE_URL``, OpenAI's). ``base_url_env`` is a
    variable holding an endpoint to use when neither ``base_url`` nor ``resource`` is set (Azure's
    ``AZURE_OPENAI_ENDPOINT``); a profile with ``base_url_env`` needs one of the three.
    """

    name: str
    base_url: str | None = None
    resource: str | None = None
    key_env: str = "OPENAI_API_KEY"
    auth: str = "bearer"
    headers: tuple[tuple[str, str], ...] = ()
    model: str | None = None
    token_provider: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    base_url_env: str | None = None

    def __post_init__(self) -> None:
        where = f"profile {self.name!r}"
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ConfigError(
                f"A profile name is letters, digits, '-' and '_', starting with a letter; not {self.name!r}."
            )
        if self.base_url is not None:
            _check_url(self.base_url, where)
        if self.resource is not None and (
            not isinstance(self.resource, str) or not _RESOURCE_RE.fullmatch(self.resource)
        ):
            raise ConfigError(
                f"{where}: resource is the Azure resource name (the RESOURCE in "
                f"https://RESOURCE.openai.azure.com), not {self.resource!r}."
            )
        _check_env_name(self.key_env, f"{where}: key_env")
        if self.base_url_env is not None:
            _check_env_name(self.base_url_env, f"{where}: base_url_env")
        if self.auth not in AUTH_STYLES:
            raise ConfigError(f"{where}: auth must be one of {', '.join(AUTH_STYLES)}, not {self.auth!r}.")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ConfigError(f"{where}: model must be a non-empty string or None.")
        if self.token_provider is not None and not callable(self.token_provider):
            raise ConfigError(
                f"{where}: token_provider must be a callable returning a bearer token (e.g. azure.identity's "
                "get_bearer_token_provider(...)), not a string: a token typed into a notebook is saved with it."
            )
        if not isinstance(self.headers, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in self.headers
        ):
            raise ConfigError(f"{where}: headers must be a dict of header names to values.")

    def resolved_base_url(self) -> str | None:
        """The base URL (read now), or None for "the session's own"; raises when a required one is missing."""
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.resource:
            return f"https://{self.resource}.openai.azure.com/openai/v1"
        if self.base_url_env:
            endpoint = os.environ.get(self.base_url_env, "").strip()
            if endpoint:
                _check_url(endpoint, f"{self.base_url_env} (for profile {self.name!r})")
                return azure_v1_url(endpoint)
            raise ConfigError(
                f"The {self.name!r} profile needs its endpoint: {self.base_url_env} is not set.",
                hint=(
                    f"Run `%responses config profile.{self.name}.resource=RESOURCE` (your resource's name, "
                    f"as in https://RESOURCE.openai.azure.com), or `profile.{self.name}.base_url=https://...`, "
                    f"or set {self.base_url_env}."
                ),
            )
        return None

    def describe(self) -> str:
        """One line for ``%responses config``: every field but secrets (header values shown as written, which
        are ``$VAR`` references when the docs are followed)."""
        bits = []
        url = self.base_url or (
            f"https://{self.resource}.openai.azure.com/openai/v1" if self.resource else None
        )
        if url:
            bits.append(f"base_url={url}")
        elif self.base_url_env:
            bits.append(f"base_url=${self.base_url_env}/openai/v1")
        else:
            bits.append("base_url=(the session's)")
        bits.append(f"key_env={self.key_env}")
        bits.append(f"auth={self.auth}")
        if self.headers:
            bits.append("headers=" + ", ".join(f"{k}: {_shown_header(v)}" for k, v in self.headers))
        if self.model:
            bits.append(f"model={self.model}")
        if self.token_provider is not None:
            bits.append("token_provider=(set)")
        return f"profile.{self.name}: " + " ".join(bits)


def azure_v1_url(endpoint: str) -> str:
    """``https://RES.openai.azure.com/`` → ``https://RES.openai.azure.com/openai/v1`` (kept if already there)."""
    endpoint = endpoint.rstrip("/")
    if endpoint.endswith("/openai/v1"):
        return endpoint
    if endpoint.endswith("/openai"):
        return endpoint + "/v1"
    return endpoint + "/openai/v1"


def _shown_header(value: str) -> str:
    return value if value.startswith("$") else "***"


def _check_url(url: Any, where: str) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ConfigError(f"{where}: base_url must look like https://host/v1, not {url!r}.")


def _check_env_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{where} wants the NAME of an environment variable (like XAI_API_KEY), never the key itself.",
            hint="Put the key in that variable (in the shell, or with getpass in the notebook).",
        )


def _as_profile(name: str, spec: Any, base: Profile | None) -> Profile:
    if isinstance(spec, Profile):
        return dataclasses.replace(spec, name=name)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"profile {name!r} must be a dict of fields ({', '.join(PROFILE_FIELDS)}), not {type(spec).__name__}."
        )
    unknown = sorted(set(spec) - set(PROFILE_FIELDS) - {"base_url_env"})
    if unknown:
        extra = ""
        if any(k in ("api_key", "key") for k in unknown):
            extra = " A profile names the variable holding the key (key_env), never the key."
        raise ConfigError(
            f"profile {name!r}: unknown field(s) {', '.join(map(repr, unknown))}.{extra}",
            hint=f"Profile fields: {', '.join(PROFILE_FIELDS)}.",
        )
    values = dict(spec)
    if "headers" in values:
        values["headers"] = _as_header_pairs(values["headers"], name)
    if base is not None:
        if values.get("base_url") or values.get("resource"):
            # A base URL given for Azure replaces the resource (and the other way round).
            values.setdefault("resource" if values.get("base_url") else "base_url", None)
        return dataclasses.replace(base, **values)
    return Profile(name, **values)


def _as_header_pairs(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        try:
            items = [tuple(p) for p in value]
        except TypeError:
            items = None  # type: ignore[assignment]
    if items is None or not all(len(p) == 2 for p in items):
        raise ConfigError(f"profile {name!r}: headers must be a dict like {{'x-api-key': '$GATEWAY_KEY'}}.")
    return tuple((str(k), str(v)) for k, v in items)


def profile_table(user: Mapping[str, Any] | None = None) -> dict[str, Profile]:
    """The built-in profiles with *user*'s definitions on top (a dict per profile, or :class:`Profile`).

    A user entry for a built-in name changes only the fields it gives (``{"azure": {"resource": "myres"}}``).
    Every entry is validated; a bad one raises :class:`ConfigError` naming the profile and the field.
    """
    table = dict(BUILTIN_PROFILES)
    for name, spec in (user or {}).items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigError(
                f"A profile name is letters, digits, '-' and '_', starting with a letter; not {name!r}."
            )
        table[name] = _as_profile(name, spec, table.get(name))
    return table


def parse_profile_field(name: str, key: str, text: str) -> Any:
    """The typed value of ``%responses config profile.NAME.KEY=text`` (``none`` clears an optional field)."""
    if key not in PROFILE_FIELDS:
        raise ConfigError(
            f"Unknown profile field {key!r}.",
            hint=f"Profile fields: {', '.join(f for f in PROFILE_FIELDS if f != 'token_provider')}.",
        )
    if key == "token_provider":
        raise ConfigError(
            "token_provider is a Python callable and cannot be typed into %responses config.",
            hint=(
                f"Use `%config ResponsesMagics.profiles = {{'{name}': {{'token_provider': provider}}}}` "
                "or ResponsesSession(profile=..., token_provider=provider)."
            ),
        )
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if text.lower() in ("none", "null", ""):
        if key in ("key_env", "auth"):
            raise ConfigError(f"profile {name!r}: {key} cannot be empty.")
        return () if key == "headers" else None
    if key == "headers":
        pairs = []
        for chunk in filter(None, (c.strip() for c in text.split(","))):
            header, sep, value = chunk.partition(":")
            if not sep or not header.strip():
                raise ConfigError(
                    f"profile {name!r}: headers wants 'Name: value, Other: $VAR', got {chunk!r}."
                )
            pairs.append((header.strip(), value.strip()))
        return tuple(pairs)
    if key == "auth":
        text = text.lower()
    return text


def name_key_variable(err: BaseException, settings: Settings) -> None:
    """Point an :class:`AuthenticationError`'s hint at the credential this turn really used (the profile's
    variable, or its token provider), never at ``OPENAI_API_KEY`` by default. Changes *err* in place."""
    if not isinstance(err, AuthenticationError) or settings.profile is None:
        return
    who = f"the {settings.profile!r} endpoint profile"
    if settings.token_provider is not None:
        hint = f"Check the credential behind {who}'s token_provider (for Entra ID: its role on the resource)."
    elif settings.auth == "none":
        hint = f"{who.capitalize()} sends no key (auth=none): check its headers (values may name $VARIABLES)."
    else:
        var = settings.api_key_env
        hint = (
            f"Check {var} (the key of {who}): set the right one with "
            f"`os.environ['{var}'] = getpass.getpass('API key: ')` and run the cell again."
        )
    err.hint = redact(hint)
    err.args = (str(err),)


def apply_profile(settings: Settings, profile: Profile) -> Settings:
    """*settings* for turns through *profile* (see the module docstring for what wins)."""
    changes: dict[str, Any] = {
        "profile": profile.name,
        "api_key_env": profile.key_env,
        "auth": profile.auth,
        "token_provider": profile.token_provider,
    }
    url = profile.resolved_base_url()
    if profile.key_env != settings.api_key_env:
        # an api_key given in Python was for the session's own variable and endpoint
        changes["api_key"] = None
    if url is not None:
        changes.update(base_url=url, api_key=None, organization=None, project=None)
        changes["extra_headers"] = profile.headers
    elif profile.headers:
        changes["extra_headers"] = settings.extra_headers + profile.headers
    if profile.model:
        changes["model"] = profile.model
    return settings.with_changes(**changes)


BUILTIN_PROFILES: dict[str, Profile] = {
    "openai": Profile("openai"),
    "azure": Profile(
        "azure", key_env="AZURE_OPENAI_API_KEY", auth="api-key", base_url_env="AZURE_OPENAI_ENDPOINT"
    ),
    "xai": Profile("xai", base_url="https://api.x.ai/v1", key_env="XAI_API_KEY", model="grok-4"),
}
