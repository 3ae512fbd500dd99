"""The LiteLLM recipe of docs/endpoints.md through a real LiteLLM proxy (its own venv, tests/gateway_fixtures.py) in
front of the TLS emulator: a profile naming the proxy's URL and the variable holding its key, over WS and SSE, with
the key sent as a bearer token or, Azure-style, in an ``api-key`` header. Skips without the proxy's venv (CI
builds it, and there a skip is a failure)."""

from __future__ import annotations

import pytest
from gateway_fixtures import MODEL, LiteLLMProxy, litellm_proxy  # noqa: F401

from ipy_responses_ws.emulator import reply_for
from ipy_responses_ws.session import ResponsesSession

pytestmark = pytest.mark.gateway


@pytest.mark.parametrize("auth", ["bearer", "api-key"])
def test_a_litellm_profile_chains_over_both_transports(
    litellm_proxy: LiteLLMProxy,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    auth: str,
) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", litellm_proxy.key)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    profiles = {"litellm": {"base_url": litellm_proxy.base_url, "key_env": "LITELLM_API_KEY", "auth": auth}}
    with ResponsesSession(profile="litellm", profiles=profiles, model=MODEL) as s:
        a = s.respond("Through the gateway")
        b = s.respond("Still there?")
        c = s.respond("Over SSE now", transport="sse", new=True)
    for r in (a, b, c):
        assert r.ok, r.error
        assert r.profile == "litellm"
        assert litellm_proxy.key not in repr(r)
    assert (a.transport, b.transport, c.transport) == ("ws", "ws", "sse")
    assert b.text == reply_for(["Through the gateway", "Still there?"])
    assert c.text == reply_for(["Over SSE now"])
