"""Settings: env read at call time, URL derivation like the SDK, key safety, typed %responses config."""

from __future__ import annotations

import pytest

from ipy_responses_ws.config import Settings, is_loopback_host, parse_config_value
from ipy_responses_ws.errors import ConfigError, InsecureTransportError, MissingAPIKeyError

KEY = "sk-test-FAKE-config-abcdef123456"


def test_env_is_read_at_call_time(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    s = Settings.from_env()
    with pytest.raises(MissingAPIKeyError):
        s.resolved_api_key()
    assert s.resolved_base_url() == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8765/v1/")
    assert s.resolved_api_key() == KEY
    assert s.resolved_base_url() == "http://127.0.0.1:8765/v1"


def test_key_not_in_repr():
    s = Settings(api_key=KEY)
    assert KEY not in repr(s)
    assert KEY not in str(s)


def test_repr_masks_gateway_keys_and_header_values_but_names_them():
    s = Settings(
        base_url="https://gw.example/v1?api-version=2025&api-key=GATEWAY-SECRET-1234",
        extra_headers=(("api-key", "AZURE-HEADER-SECRET-5678"), ("OpenAI-Beta", "responses=v1")),
    )
    shown = repr(s)
    assert "GATEWAY-SECRET-1234" not in shown and "AZURE-HEADER-SECRET-5678" not in shown
    assert "responses=v1" not in shown  # every custom header value: we cannot tell which ones are secret
    assert "api-version=2025" in shown and "api-key=***" in shown
    assert "('api-key', '***')" in shown and "('OpenAI-Beta', '***')" in shown
    assert s.http_url().endswith("api-key=GATEWAY-SECRET-1234")  # the request itself still carries it


@pytest.mark.parametrize(
    ("base", "ws"),
    [
        ("http://127.0.0.1:8765/v1", "ws://127.0.0.1:8765/v1/responses"),
        ("https://api.openai.com/v1/", "wss://api.openai.com/v1/responses"),
        (
            "https://example.com/openai/v1?api-version=1",
            "wss://example.com/openai/v1/responses?api-version=1",
        ),
    ],
)
def test_ws_url_like_sdk(base, ws):
    assert Settings(base_url=base).ws_url() == ws


def test_insecure_transport_refused_off_loopback():
    s = Settings(base_url="http://example.com/v1")
    with pytest.raises(InsecureTransportError) as info:
        s.check_secure(s.ws_url())
    assert "allow_insecure" in str(info.value)
    s.with_changes(allow_insecure=True).check_secure(s.ws_url())  # allowed explicitly
    for host in ("127.0.0.1", "127.5.6.7", "[::1]", "localhost"):
        Settings(base_url=f"http://{host}:9/v1").check_secure(f"ws://{host}:9/v1/responses")
    Settings(base_url="https://example.com/v1").check_secure("wss://example.com/v1/responses")
    assert not is_loopback_host("10.0.0.1")
    assert not is_loopback_host("localhost.example.com")


def test_with_changes_validates():
    s = Settings()
    assert s.with_changes(model="gpt-x", pool_size=2).pool_size == 2
    for bad in (
        {"transport": "carrier-pigeon"},
        {"pool_size": 0},
        {"idle_timeout": -1},
        {"reasoning_effort": "huge"},
        {"nope": 1},
        {"base_url": "ftp:/x"},
        {"base_url": 8080},
        {"store": "no"},
        {"temperature": "hot"},
        {"pool_size": "3"},
    ):
        with pytest.raises(ConfigError):
            s.with_changes(**bad)
    assert s.with_changes(extra_headers={"X-A": "1"}).extra_headers == (("X-A", "1"),)


def test_auth_headers(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    h = Settings(organization="org_1", project="proj_1", extra_headers=(("X-Trace", "t"),)).auth_headers()
    assert h == {
        "Authorization": f"Bearer {KEY}",
        "OpenAI-Organization": "org_1",
        "OpenAI-Project": "proj_1",
        "X-Trace": "t",
    }


def test_parse_config_value():
    assert parse_config_value("store", "False") is False
    assert parse_config_value("pool_size", "3") == 3
    assert parse_config_value("idle_timeout", "2.5") == 2.5
    assert parse_config_value("temperature", "none") is None
    assert parse_config_value("model", "'gpt-5'") == "gpt-5"
    assert parse_config_value("extra_headers", "X-A: 1, X-B: two") == (("X-A", "1"), ("X-B", "two"))
    with pytest.raises(ConfigError):
        parse_config_value("api_key", KEY)
    with pytest.raises(ConfigError):
        parse_config_value("pool_size", "many")
    with pytest.raises(ConfigError):
        parse_config_value("colour", "red")
