"""Endpoint profiles (profiles.py): where a turn goes, which variable holds its key, how the key is sent.

Against the emulator on loopback: a profile routes to its base URL with its auth style (the emulator's connection
log names the headers; their values are masked there and must never appear whole), Azure's ``api-key`` header and
an Entra ID bearer-token callable, two profiles in one session on two servers without mixing their sockets. The
pure parts (built-ins, precedence, validation, ``$VAR`` header values) need no socket.
"""

from __future__ import annotations

import pytest

from ipy_responses_ws.config import Settings
from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.errors import AuthenticationError, ConfigError, MissingAPIKeyError
from ipy_responses_ws.profiles import apply_profile, profile_table
from ipy_responses_ws.session import ResponsesSession

AZ_KEY = "azure-FAKE-key-0123456789abcdef"
XAI_KEY = "xai-FAKE-key-0123456789abcdef"
GW_KEY = "gw-FAKE-key-0123456789abcdef"
FAST = dict(connect_timeout=5.0, first_event_timeout=10.0, idle_timeout=10.0)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "XAI_API_KEY",
        "GATEWAY_KEY",
    ):
        monkeypatch.delenv(var, raising=False)


def _all_text(emu: Emulator) -> str:
    return "\n".join(repr(c.to_dict()) for c in emu.connections)


# --- the built-in profiles, without sockets -------------------------------------------------------------------


def test_xai_profile_needs_only_its_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAI_API_KEY", XAI_KEY)
    settings = apply_profile(Settings(), profile_table()["xai"])
    assert settings.ws_url() == "wss://api.x.ai/v1/responses"
    assert settings.http_url() == "https://api.x.ai/v1/responses"
    assert settings.auth_headers() == {"Authorization": f"Bearer {XAI_KEY}"}
    assert settings.model == "grok-4" and settings.profile == "xai"
    assert XAI_KEY not in repr(settings)


def test_azure_profile_sends_api_key_header_to_its_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZ_KEY)
    table = profile_table({"azure": {"resource": "my-res"}})
    settings = apply_profile(Settings(), table["azure"])
    assert settings.ws_url() == "wss://my-res.openai.azure.com/openai/v1/responses"
    # like openai-python's AzureOpenAI: the key alone in `api-key`, no Authorization header
    assert settings.auth_headers() == {"api-key": AZ_KEY}
    # the endpoint from AZURE_OPENAI_ENDPOINT (as the SDK reads it), /openai/v1 added
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://other.openai.azure.com/")
    settings = apply_profile(Settings(), profile_table()["azure"])
    assert settings.http_url() == "https://other.openai.azure.com/openai/v1/responses"


def test_azure_without_an_endpoint_says_how_to_name_one() -> None:
    with pytest.raises(ConfigError) as err:
        apply_profile(Settings(), profile_table()["azure"])
    text = str(err.value)
    assert "AZURE_OPENAI_ENDPOINT" in text and "profile.azure.resource=" in text


def test_missing_key_names_the_profiles_variable() -> None:
    s = ResponsesSession(profile="xai")
    try:
        with pytest.raises(MissingAPIKeyError) as err:
            s.settings.require_credentials()
        assert err.value.variable == "XAI_API_KEY" and err.value.profile == "xai"
        assert "XAI_API_KEY" in str(err.value) and "OPENAI_API_KEY" not in str(err.value)
        r = s.respond("hello")  # a turn fails the same way, before any socket
        assert isinstance(r.error, MissingAPIKeyError) and "XAI_API_KEY" in str(r.error)
    finally:
        s.close()


def test_a_profile_with_its_own_url_gets_none_of_the_sessions_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An api_key, headers, organization given for the session's endpoint never travel to another provider."""
    monkeypatch.setenv("XAI_API_KEY", XAI_KEY)
    s = ResponsesSession(
        api_key="sk-test-FAKE-session-0123456789",
        organization="org-x",
        extra_headers={"X-Team": "t1"},
        model="gpt-5",
    )
    try:
        xai = s.settings_for("xai")
        assert xai.auth_headers() == {"Authorization": f"Bearer {XAI_KEY}"}
        assert xai.model == "grok-4"
        assert s.settings_for(None).auth_headers()["X-Team"] == "t1"  # the session's own turns keep them
        # a cell's own option beats the profile's model
        assert s.settings_for("xai").with_changes(model="grok-3").model == "grok-3"
    finally:
        s.close()


def test_header_values_name_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    table = profile_table(
        {
            "gw": {
                "base_url": "https://gw.example/v1",
                "auth": "none",
                "headers": {"x-api-key": "$GATEWAY_KEY"},
            }
        }
    )
    with pytest.raises(MissingAPIKeyError) as err:
        apply_profile(Settings(), table["gw"]).auth_headers()
    assert err.value.variable == "GATEWAY_KEY" and "GATEWAY_KEY" in str(err.value)
    monkeypatch.setenv("GATEWAY_KEY", GW_KEY)
    settings = apply_profile(Settings(), table["gw"])
    assert settings.auth_headers() == {"x-api-key": GW_KEY}
    assert GW_KEY not in repr(settings) and GW_KEY not in table["gw"].describe()
    assert "x-api-key: $GATEWAY_KEY" in table["gw"].describe()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"base_url": "https://gw/v1", "api_key": "sk-live"}, ["api_key", "key_env"]),
        ({"key_env": "sk-live-0123456789"}, ["NAME of an environment variable"]),
        ({"auth": "basic"}, ["bearer", "api-key", "none"]),
        ({"base_url": "ftp://gw"}, ["https://host/v1"]),
        ({"token_provider": "eyJ-a-token"}, ["callable"]),
        ({"headers": "x-api-key"}, ["headers"]),
        ({"colour": "blue"}, ["'colour'", "base_url"]),
    ],
)
def test_bad_profile_fields_say_what_is_wrong(spec: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        profile_table({"gw": spec})
    for word in words:
        assert word in str(err.value)
    assert "sk-live" not in str(err.value)  # a key typed by mistake is never echoed back


def test_bad_profile_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="profile name"):
        profile_table({"1st": {"base_url": "https://gw/v1"}})
    with pytest.raises(ConfigError, match="Unknown endpoint profile 'nope'"):
        ResponsesSession(profile="nope")


# --- against the emulator -------------------------------------------------------------------------------------


def test_azure_profile_reaches_its_server_with_the_api_key_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZ_KEY)
    with Emulator(api_key=AZ_KEY).run_in_thread() as emu:
        s = ResponsesSession(profile="azure", profiles={"azure": {"base_url": emu.base_url}}, **FAST)
        try:
            a = s.respond("over ws")
            b = s.respond("over sse", transport="sse")
            assert a.ok and b.ok, (a.error, b.error)
            assert b.text == reply_for(["over ws", "over sse"]) and a.profile == "azure"
            assert [c.transport for c in emu.connections] == ["ws", "http"]
            for log in emu.connections:
                names = {name.lower() for name in log.headers}
                assert "api-key" in names and "authorization" not in names
            assert AZ_KEY not in _all_text(emu)
            # a wrong key is refused by the server (the emulator checks api-key like Authorization)
            monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-FAKE-wrong-key-99999999")
            r = s.respond("wrong key", new=True)
            assert isinstance(r.error, AuthenticationError), r.error
            assert "azure-FAKE-wrong-key-99999999" not in str(r.error) + repr(r)
            assert "AZURE_OPENAI_API_KEY" in str(r.error) and "Check OPENAI_API_KEY" not in str(r.error)
        finally:
            s.close()


def test_entra_token_provider_is_called_per_connection_and_never_shown() -> None:
    calls: list[str] = []

    def provider() -> str:
        token = f"entra-FAKE-token-abcdefghij-{len(calls):04d}"
        calls.append(token)
        return token

    with Emulator().run_in_thread() as emu:  # accepts any bearer token
        s = ResponsesSession(
            profile="azure",
            profiles={"azure": {"base_url": emu.base_url}},
            token_provider=provider,
            **FAST,
        )
        try:
            assert s.settings.require_credentials() is None and calls == []  # no call before a request
            assert s.respond("one").ok
            assert s.respond("two", transport="sse").ok
            s.close()
            s = ResponsesSession(
                profile="azure",
                profiles={"azure": {"base_url": emu.base_url, "token_provider": provider}},
                **FAST,
            )
            r = s.respond("three")
            assert r.ok, r.error
            dials = list(emu.connections)
            assert len(dials) == 3 and len(calls) >= 3
            for log in dials:
                assert log.headers["Authorization"].startswith("Bearer ")
                assert "api-key" not in {n.lower() for n in log.headers}
            # each connection and request was opened with a fresh token (the log keeps its last 4 characters)
            ends = [log.headers["Authorization"][-4:] for log in dials]
            assert len(set(ends)) == 3 and set(ends) <= {t[-4:] for t in calls}
            shown = repr(s) + repr(s.settings) + repr(r) + str(s.profiles) + _all_text(emu)
            for token in calls:
                assert token not in shown
        finally:
            s.close()


def test_a_failing_token_provider_is_a_clear_error_without_the_token() -> None:
    def provider() -> str:
        raise RuntimeError("credential unavailable")

    with Emulator().run_in_thread() as emu:
        s = ResponsesSession(
            profile="azure", profiles={"azure": {"base_url": emu.base_url}}, token_provider=provider, **FAST
        )
        try:
            r = s.respond("hello")
            assert not r.ok and isinstance(r.error, ConfigError)
            assert "token_provider of profile 'azure' failed" in str(r.error)
            assert "credential unavailable" in str(r.error)
            assert emu.connections == []  # nothing went out without a credential
        finally:
            s.close()


def test_two_profiles_in_one_session_keep_their_servers_and_sockets_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XAI_API_KEY", XAI_KEY)
    monkeypatch.setenv("GATEWAY_KEY", GW_KEY)
    with (
        Emulator(api_key=XAI_KEY).run_in_thread() as first,
        Emulator(api_key=GW_KEY).run_in_thread() as second,
    ):
        s = ResponsesSession(
            profiles={
                "xai": {"base_url": first.base_url},
                "gw": {"base_url": second.base_url, "key_env": "GATEWAY_KEY", "model": "gw-model"},
            },
            **FAST,
        )
        try:
            a = s.respond("compare me", profile="xai", chain="xai")
            b = s.respond("compare me", profile="gw", chain="gw")
            a2 = s.respond("and again", profile="xai", chain="xai")
            assert a.ok and b.ok and a2.ok, (a.error, b.error, a2.error)
            assert (a.profile, b.profile, a2.profile) == ("xai", "gw", "xai")
            assert a.model == "grok-4" and b.model == "gw-model"
            assert a2.text == reply_for(["compare me", "and again"])
            # Never mixed: each server saw only its own profile's key and model; gw's socket never carried xai.
            # Each profile keeps its idle socket, so switching back reuses it instead of dialling again.
            assert a2.connection_id != b.connection_id and a2.connection_id == a.connection_id
            assert [c.transport for c in first.connections] == ["ws"]
            assert [c.transport for c in second.connections] == ["ws"]
            assert all(c.headers["Authorization"].endswith(XAI_KEY[-4:]) for c in first.connections)
            assert second.connections[0].headers["Authorization"].endswith(GW_KEY[-4:])
            assert {c.query.get("model") for c in first.connections} == {"grok-4"}
            assert second.connections[0].query.get("model") == "gw-model"
            assert len(second.connections[0].requests) == 1
        finally:
            s.close()


def test_a_gateway_profile_sends_its_own_header_instead_of_authorization(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/endpoints.md, "Other gateways": auth none, the key in ``x-api-key`` read from $GATEWAY_KEY per request."""
    monkeypatch.setenv("GATEWAY_KEY", GW_KEY)
    with Emulator().run_in_thread() as emu:
        profiles = {
            "gw": {
                "base_url": emu.base_url,
                "auth": "none",
                "headers": {"x-api-key": "$GATEWAY_KEY", "x-team": "research"},
            }
        }
        with ResponsesSession(profile="gw", profiles=profiles, **FAST) as s:
            assert s.respond("ws").ok
            assert s.respond("sse", transport="sse").ok
            rotated = "gw-FAKE-rotated-0123456789wxyz"
            monkeypatch.setenv("GATEWAY_KEY", rotated)  # read when the request is made: the next dial uses it
            assert s.respond("after rotation").ok
        for log in emu.connections:
            names = {n.lower() for n in log.headers}
            assert "authorization" not in names and log.headers["x-team"] == "research"
        assert emu.connections[0].headers["x-api-key"].endswith(GW_KEY[-4:])
        assert emu.connections[-1].headers["x-api-key"].endswith("wxyz")
        assert GW_KEY not in _all_text(emu) and rotated not in _all_text(emu)
