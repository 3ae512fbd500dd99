"""``%%respond -p NAME`` and ``%responses config profile.NAME.FIELD=...`` in a real kernel, two emulators standing
in for two providers: each cell goes to its profile's server with its auth style, the profile's name is in the
status line and the footer, the keys appear nowhere in iopub, and wrong names or fields are plain UsageErrors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kernel_helpers import Execution, Kernel, all_text

from ipy_responses_ws.emulator import Emulator, reply_for

pytestmark = pytest.mark.kernel

ALPHA_KEY = "alpha-FAKE-key-0123456789abcdef"
BETA_KEY = "beta-FAKE-key-0123456789abcdef"


@pytest.fixture(scope="module")
def alpha() -> Iterator[Emulator]:
    with Emulator(ALPHA_KEY, ttft=0.01, token_rate=3000).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def beta() -> Iterator[Emulator]:
    with Emulator(BETA_KEY, ttft=0.01, token_rate=3000).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def kernel(alpha: Emulator, beta: Emulator) -> Iterator[Kernel]:
    env = {"ALPHA_KEY": ALPHA_KEY, "BETA_KEY": BETA_KEY, "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    with Kernel(env) as k:
        ex = k.execute("%load_ext ipy_responses_ws")
        assert ex.status == "ok", ex.error
        # one profile from Python (as in ipython_config.py), one typed with %responses config
        ex = k.execute(
            "%config ResponsesMagics.profiles = "
            f"{{'alpha': {{'base_url': '{alpha.base_url}', 'key_env': 'ALPHA_KEY', 'model': 'alpha-model'}}}}"
        )
        assert ex.status == "ok", ex.error
        ex = k.execute(
            f"%responses config profile.beta.base_url={beta.base_url} profile.beta.key_env=BETA_KEY "
            "profile.beta.auth=api-key profile.beta.model=beta-model"
        )
        assert ex.status == "ok", ex.error
        assert "profile.beta: base_url=" in ex.stdout() and "key_env=BETA_KEY auth=api-key" in ex.stdout()
        yield k


def frozen_markdown(ex: Execution) -> str:
    updates = [m for m in ex.messages if m["msg_type"] == "update_display_data"]
    assert updates, "the live view was not replaced by a plain bundle"
    return updates[-1]["content"]["data"]["text/markdown"]


def live_html(ex: Execution) -> str:
    return "\n".join(
        json.dumps(m["content"], ensure_ascii=False)
        for m in ex.messages
        if m["msg_type"] in ("comm_open", "comm_msg")
    )


def usage_error(ex: Execution) -> str:
    assert ex.status == "error" and ex.error is not None, ex.messages
    assert ex.error["ename"] == "UsageError", ex.error
    return str(ex.error["evalue"])


def keys_absent(ex: Execution) -> None:
    text = all_text(ex.messages)
    assert ALPHA_KEY not in text and BETA_KEY not in text


def test_two_cells_compare_two_providers(kernel: Kernel, alpha: Emulator, beta: Emulator) -> None:
    first = kernel.execute("%%respond -p alpha\nCompare the two servers")
    second = kernel.execute("%%respond -p beta\nCompare the two servers")
    for ex, name, model in ((first, "alpha", "alpha-model"), (second, "beta", "beta-model")):
        assert ex.status == "ok", ex.error
        md = frozen_markdown(ex)
        # each profile keeps its own conversation: the second cell is a first turn too, not a continuation
        assert md.startswith(reply_for(["Compare the two servers"]))
        assert f"done · WS · {name} ·" in md  # the footer names the profile
        assert f"</b> · {name} · " in live_html(ex)  # ... and so did the live status line, after the state
        keys_absent(ex)
        meta = [m for m in ex.messages if m["msg_type"] == "update_display_data"][-1]["content"]["metadata"]
        assert meta["ipy_responses_ws"]["model"] == model
    # each server saw only its own profile, with its own auth style
    assert [c.transport for c in alpha.connections] == ["ws"]
    assert [c.transport for c in beta.connections] == ["ws"]
    assert "Authorization" in alpha.connections[0].headers
    assert "api-key" in {n.lower() for n in beta.connections[0].headers}
    assert "authorization" not in {n.lower() for n in beta.connections[0].headers}


def test_default_profile_and_sse(kernel: Kernel, beta: Emulator) -> None:
    ex = kernel.execute("%responses config profile=beta")
    assert ex.status == "ok", ex.error
    ex = kernel.execute("%%respond -t sse --new\nDefault profile now")
    assert ex.status == "ok", ex.error
    assert "done · SSE · beta ·" in frozen_markdown(ex)
    assert beta.connections[-1].transport == "http"
    assert "api-key" in {n.lower() for n in beta.connections[-1].headers}
    keys_absent(ex)
    ex = kernel.execute("%responses config profile=none")
    assert ex.status == "ok", ex.error


def test_plain_text_view_names_the_profile(kernel: Kernel) -> None:
    """Terminal IPython's view (``view = 'text'``) prints the same footer."""
    ex = kernel.execute("%config ResponsesMagics.view = 'text'")
    assert ex.status == "ok", ex.error
    try:
        ex = kernel.execute("%%respond -p alpha\nIn plain text")
        assert ex.status == "ok", ex.error
        assert "[done · WS · alpha ·" in ex.stdout()
        keys_absent(ex)
    finally:
        assert kernel.execute("%config ResponsesMagics.view = 'auto'").status == "ok"


def test_config_lists_profiles_without_keys(kernel: Kernel) -> None:
    ex = kernel.execute("%responses config")
    assert ex.status == "ok", ex.error
    out = ex.stdout()
    for line in ("profile.openai:", "profile.azure:", "profile.xai:", "profile.alpha:", "profile.beta:"):
        assert line in out
    assert "key_env=XAI_API_KEY" in out and "key_env=AZURE_OPENAI_API_KEY auth=api-key" in out
    keys_absent(ex)


def test_a_missing_key_names_the_profiles_variable(kernel: Kernel) -> None:
    ex = kernel.execute(
        "%responses config profile.gamma.base_url=https://gamma.example/v1 profile.gamma.key_env=GAMMA_KEY"
    )
    assert ex.status == "ok", ex.error
    message = usage_error(kernel.execute("%%respond -p gamma\nhello"))
    assert "GAMMA_KEY" in message and "'gamma'" in message and "OPENAI_API_KEY" not in message
    message = usage_error(kernel.execute("%%respond -p xai\nhello"))
    assert "XAI_API_KEY" in message


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("%%respond -p nope\nhello", ["Unknown endpoint profile 'nope'", "alpha", "beta", "xai"]),
        ("%%respond -p azure\nhello", ["AZURE_OPENAI_ENDPOINT", "profile.azure.resource="]),
        ("%responses config profile.alpha.colour=blue", ["Unknown profile field 'colour'", "base_url"]),
        ("%responses config profile.alpha.key_env=sk-live-0123456789", ["NAME of an environment variable"]),
        ("%responses config profile.alpha.auth=basic", ["bearer", "api-key"]),
        ("%responses config profile.alpha=x", ["profile.NAME.FIELD=value"]),
        ("%responses config profile.9lives.base_url=https://x/v1", ["profile name"]),
        ("%responses config profile=nope", ["Unknown endpoint profile 'nope'"]),
        ("%responses config profile.alpha.token_provider=abc", ["Python callable"]),
    ],
)
def test_bad_profile_names_and_fields_are_usage_errors(kernel: Kernel, cell: str, words: list[str]) -> None:
    message = usage_error(kernel.execute(cell))
    for word in words:
        assert word in message, message
    assert "sk-live-0123456789" not in message


def test_a_bad_field_changes_nothing(kernel: Kernel) -> None:
    ex = kernel.execute("%responses config profile.alpha.model=changed profile.alpha.auth=basic\n")
    usage_error(ex)
    ex = kernel.execute(
        "import json; print(json.dumps(get_ipython().find_cell_magic('respond').__self__.profiles['alpha']))"
    )
    assert ex.status == "ok", ex.error
    profile: dict[str, Any] = json.loads(ex.stdout().strip().splitlines()[-1])
    assert profile["model"] == "alpha-model"


def test_an_entra_token_provider_set_with_config(kernel: Kernel, alpha: Emulator) -> None:
    """The docs' Entra ID recipe: a callable in ``%config ResponsesMagics.profiles``, called per request."""
    ex = kernel.execute(
        "import os\n"
        "token_calls = []\n"
        "def provider():\n"
        "    token_calls.append(1)\n"
        "    return os.environ['ALPHA_KEY']  # the emulator checks bearer tokens against its key\n"
        "%config ResponsesMagics.profiles = {'entra': {'base_url': '"
        + alpha.base_url
        + "', 'key_env': 'UNSET_KEY_VARIABLE', 'token_provider': provider}}"
    )
    assert ex.status == "ok", ex.error
    before = len(alpha.connections)
    ex = kernel.execute("%%respond -p entra\nToken please")
    assert ex.status == "ok", ex.error
    assert "done · WS · entra ·" in frozen_markdown(ex)
    keys_absent(ex)
    assert len(alpha.connections) == before + 1
    ex = kernel.execute("print(len(token_calls))")
    assert int(ex.stdout().strip()) >= 1


def test_the_endpoints_notebook_compares_two_profiles() -> None:
    """notebooks/endpoints.ipynb: two emulators, two profiles, the same question in two cells, a comparison."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(__file__).resolve().parents[1] / "notebooks" / "endpoints.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=False).execute()
    answers = {}
    for c in nb.cells:
        if c.cell_type == "code" and c.source.startswith("%%respond -p "):
            outs = [o for o in c.outputs if o.output_type == "display_data"]
            assert len(outs) == 1 and "application/vnd.jupyter.widget-view+json" not in outs[0]["data"]
            answers[c.source.split()[2]] = outs[0]["data"]["text/markdown"]
    assert set(answers) == {"quick", "steady"}
    question = ["Explain WebSocket close code 1006 in one sentence."]
    for name, md in answers.items():
        assert md.startswith(reply_for(question))  # each profile's own first turn, not a continuation
        assert f"done · WS · {name} ·" in md
    table = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("for r in (a, b)")][0]
    lines = "".join(o.get("text", "") for o in table.outputs).splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["quick", "quick-model", "completed"],
        ["steady", "steady-model", "completed"],
    ]
