"""Configuration: defaults, certgate.toml, CERTGATE_*, mapping; start-up refuses bad values."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from gateway import create_app
from gateway.config import ConfigError
from softhsm.pki import TestPki
from tests.gateway.conftest import DATA_KEY, ORIGIN


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in (
        "CERTGATE_PUBLIC_ORIGIN",
        "CERTGATE_DATA_KEY",
        "CERTGATE_DATABASE_URL",
        "CERTGATE_DEV_MODE",
        "CERTGATE_CONFIG_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write_toml(directory: Path, text: str) -> Path:
    path = directory / "certgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_layers_in_order(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(
        workdir,
        f'''
public_origin = "https://from-file.example.cn"
data_key = "{DATA_KEY}"
challenge_ttl = 90
trusted_proxies = ["10.1.0.0/16"]
[session]
idle_timeout = 600
''',
    )
    monkeypatch.setenv("CERTGATE_CHALLENGE_TTL", "60")
    app = create_app()
    assert app.config["PUBLIC_ORIGIN"] == "https://from-file.example.cn"
    assert app.config["CHALLENGE_TTL"] == 60  # environment beats the file
    assert app.config["SESSION_IDLE_TIMEOUT"] == 600
    assert [str(n) for n in app.config["TRUSTED_PROXIES"]] == ["10.1.0.0/16"]
    assert app.config["DATABASE_URL"] == "sqlite:///certgate.sqlite3"
    assert (workdir / "certgate.sqlite3").is_file()
    app = create_app({"CHALLENGE_TTL": 30})  # the mapping beats both
    assert app.config["CHALLENGE_TTL"] == 30


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("public_origin = 'https://x.cn'", "data_key: required"),
        (f"data_key = '{DATA_KEY}'", "public_origin: required"),
        (f"data_key = '{DATA_KEY}'\npublic_origin = 'https://x.cn/login'", "no path"),
        (f"data_key = '{DATA_KEY}'\npublic_origin = 'ftp://x.cn'", "http(s) origin"),
        ("data_key = 'c2hvcnQ='\npublic_origin = 'https://x.cn'", "32 bytes"),
        (
            f"data_key = '{DATA_KEY}'\npublic_origin = 'https://x.cn'\nchallenge_ttl = 600",
            "challenge_ttl: at most 120",
        ),
        (
            f"data_key = '{DATA_KEY}'\npublic_origin = 'https://x.cn'\ntrusted_proxies = ['x']",
            "trusted_proxies",
        ),
        (
            f"data_key = '{DATA_KEY}'\npublic_origin = 'https://x.cn'\nsession_idle_timeout = -1",
            "session_idle_timeout",
        ),
        ("colour = 'blue'", "unknown setting 'colour'"),
        ("this is = not toml =", "not valid TOML"),
    ],
)
def test_bad_values_name_file_and_field(workdir: Path, toml: str, message: str) -> None:
    path = write_toml(workdir, toml)
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert message in str(caught.value)
    if "required" not in message:
        assert str(path) in str(caught.value)


def test_environment_errors_name_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTGATE_PUBLIC_ORIGIN", "not an origin")
    monkeypatch.setenv("CERTGATE_DATA_KEY", DATA_KEY)
    with pytest.raises(ConfigError, match="CERTGATE_PUBLIC_ORIGIN"):
        create_app()


def test_dev_mode_generates_and_keeps_a_key(workdir: Path) -> None:
    app = create_app({"DEV_MODE": True})
    assert app.config["PUBLIC_ORIGIN"] == "http://127.0.0.1:8080"
    key_file = workdir / ".certgate-dev-data-key"
    assert len(base64.b64decode(key_file.read_text())) == 32
    assert key_file.stat().st_mode & 0o077 == 0
    first = key_file.read_text()
    create_app({"DEV_MODE": True})
    assert key_file.read_text() == first


def anchors_toml(pki: TestPki, **fields: Any) -> str:
    entry = {
        "name": "Root",
        "certificate": str(pki.ca_certificate_path("root")),
        "revocation": "off",
        **fields,
    }
    body = "\n".join(
        f"{k} = {v!r}" if not isinstance(v, list) else f"{k} = {v!r}" for k, v in entry.items()
    )
    return f"data_key = '{DATA_KEY}'\npublic_origin = '{ORIGIN}'\n[[trust.anchors]]\n{body}\n"


def test_trust_anchor_from_file(workdir: Path, test_pki: TestPki) -> None:
    write_toml(workdir, anchors_toml(test_pki))
    app = create_app()
    engine = app.extensions["certgate.engine"]
    assert [a.name for a in engine.anchors] == ["Root"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"certificate": "/nonexistent/root.pem"}, "trust.anchors[0].certificate: cannot read"),
        ({"revocation": "sometimes"}, "trust.anchors[0].revocation: one of"),
        ({"crl": ["/nonexistent.crl"]}, "trust.anchors[0].crl[0]: no such CRL file"),
        ({"ocsp": "ldap://x"}, "trust.anchors[0].ocsp"),
        ({"colour": "blue"}, "trust.anchors[0]: unknown key(s) colour"),
        ({"intermediates": ["/nonexistent.pem"]}, "trust.anchors[0].intermediates[0]: cannot"),
    ],
)
def test_bad_trust_anchor_fails_start_up(
    workdir: Path, test_pki: TestPki, fields: dict[str, Any], message: str
) -> None:
    path = write_toml(workdir, anchors_toml(test_pki, **fields))
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_bad_mapping_rule_fails_start_up(workdir: Path, test_pki: TestPki) -> None:
    path = write_toml(
        workdir,
        anchors_toml(test_pki) + "[trust.anchors.mapping]\nlookups = ['person: shoe_size']\n",
    )
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert "trust.anchors[0].mapping.lookups[0].identity" in str(caught.value)
    assert str(path) in str(caught.value)


def test_damaged_crl_file_fails_start_up(workdir: Path, test_pki: TestPki) -> None:
    bad = workdir / "bad.crl"
    bad.write_bytes(b"not a crl")
    write_toml(workdir, anchors_toml(test_pki, crl=[str(bad)]))
    with pytest.raises(ConfigError, match=r"crl\[0\]"):
        create_app()


def test_no_config_file_and_no_settings_refuses_to_start(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="public_origin: required"):
        create_app()


def test_database_url_is_checked(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="database_url"):
        create_app({"DATA_KEY": DATA_KEY, "PUBLIC_ORIGIN": ORIGIN, "DATABASE_URL": "nonsense"})
