"""`certgate client add|list|remove` and `certgate keys rotate`: JSON answers, exit codes,
secrets kept only as keyed hashes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from gateway.cli import main
from tests.gateway.conftest import DATA_KEY, ORIGIN


@pytest.fixture
def certgate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    env = {
        "CERTGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
    }

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env)

    run.database = tmp_path / "cli.sqlite3"  # type: ignore[attr-defined]
    return run


def listed(certgate: Any) -> list[dict[str, Any]]:
    result = certgate("client", "list", "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_add_list_and_remove_clients(certgate: Any) -> None:
    confidential = certgate(
        "client", "add", "工程监管平台", "--protocol", "oidc",
        "--redirect-uri", "https://app.example.cn/cb",
        "--post-logout-redirect-uri", "https://app.example.cn/",
        "--backchannel-logout-uri", "https://app.example.cn/logout", "--json",
    )  # fmt: skip
    assert confidential.exit_code == 0, confidential.output
    answer = json.loads(confidential.output)
    assert set(answer) == {"client_id", "client_secret"} and len(answer["client_secret"]) >= 43
    public = certgate(
        "client", "add", "Mobile", "--protocol", "oidc", "--redirect-uri",
        "http://127.0.0.1:8765/cb", "--public", "--consent", "skip", "--json",
    )  # fmt: skip
    assert public.exit_code == 0 and set(json.loads(public.output)) == {"client_id"}
    cas = certgate(
        "client", "add", "OA", "--protocol", "cas", "--service", "https://oa.example.cn/", "--json"
    )
    assert cas.exit_code == 0 and set(json.loads(cas.output)) == {"client_id"}

    clients = {c["client_id"]: c for c in listed(certgate)}
    first = clients[answer["client_id"]]
    assert first["name"] == "工程监管平台" and first["consent"] == "ask"
    assert first["backchannel_logout_uri"] == "https://app.example.cn/logout"
    assert clients[json.loads(public.output)["client_id"]]["public"] is True
    assert clients[json.loads(cas.output)["client_id"]]["services"] == ["https://oa.example.cn/"]
    # The secret is not stored, not even in the list.
    assert answer["client_secret"] not in certgate("client", "list", "--json").output
    engine = create_engine(f"sqlite:///{certgate.database}")
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT client_secret_hash FROM sso_clients")).all()
    engine.dispose()
    assert all(answer["client_secret"] not in str(row) for row in stored)

    removed = certgate("client", "remove", answer["client_id"])
    assert removed.exit_code == 0
    assert answer["client_id"] not in {c["client_id"] for c in listed(certgate)}


@pytest.mark.parametrize(
    "args",
    [
        ("client", "add", "X", "--protocol", "oidc"),  # no redirect URI
        ("client", "add", "X", "--protocol", "oidc", "--redirect-uri", "http://app.example.cn/cb"),
        ("client", "add", "X", "--protocol", "oidc", "--redirect-uri", "https://a.cn/cb#frag"),
        ("client", "add", "X", "--protocol", "oidc", "--redirect-uri", "/relative"),
        ("client", "add", "X", "--protocol", "cas"),  # no service
        ("client", "add", "X", "--protocol", "cas", "--service", "https://a.cn/", "--public"),
        ("client", "add", "X", "--protocol", "saml", "--redirect-uri", "https://a.cn/cb"),
        (
            "client",
            "add",
            "X",
            "--protocol",
            "oidc",
            "--redirect-uri",
            "https://a.cn/cb",
            "--consent",
            "never",
        ),
        ("client", "remove", "no-such-client"),
    ],
)
def test_refused_input_exits_2_with_one_line(certgate: Any, args: tuple[str, ...]) -> None:
    result = certgate(*args)
    assert result.exit_code == 2, result.output
    assert "Error: " in result.output


def test_keys_rotate_keeps_the_old_keys_published(certgate: Any) -> None:
    first = certgate("keys", "rotate", "--json")
    assert first.exit_code == 0, first.output
    second = json.loads(certgate("keys", "rotate", "--json").output)
    assert set(second["retired"]) == set(json.loads(first.output)["new"])
    assert len(second["new"]) == 2
