"""``amr`` and ``acr`` (DESIGN.md "Assurance"): a certificate login claims a hardware key only
when its trust anchor is configured ``hardware_keys = true``; the session keeps what the login
claimed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from gateway import ConfigError, create_app
from gateway.accounts import get_accounts
from gateway.cli import main
from gateway.clock import FixedClock
from softhsm.pki import TestPki, random_id_card_number
from tests.fixtures_softhsm import MakeSoftHsmToken
from tests.gateway.conftest import (
    DATA_KEY,
    ORIGIN,
    PASSWORD,
    TRUSTED_PROXY,
    close_app,
    pki_anchor_config,
    post_json,
)
from tests.gateway.serving import serving
from tests.gateway.test_tls_login import nginx_headers
from tests.gateway.test_token_login import person_with_account, token_login
from tokens.cli import agent
from tokens.pkcs11 import SOFTHSM_MODULE

LOA_1 = "urn:certgate:loa:1"
LOA_3 = "urn:certgate:loa:3"
LOA_4 = "urn:certgate:loa:4"


def session_claims(client: FlaskClient) -> tuple[list[str], str]:
    session = client.get("/api/v1/session")
    assert session.status_code == 200, session.json
    return session.json["amr"], session.json["acr"]


def tls_login(app: Flask, issued: Any) -> Any:
    client = app.test_client()
    response = client.post(
        "/api/v1/login/tls",
        json={},
        headers={"Origin": ORIGIN, **nginx_headers(issued)},
        environ_base={"REMOTE_ADDR": TRUSTED_PROXY},
    )
    return client, response


@pytest.mark.parametrize(
    ("anchor", "amr", "acr"),
    [
        ({}, ["swk", "pin"], LOA_3),
        ({"hardware_keys": False}, ["swk", "pin"], LOA_3),
        ({"hardware_keys": True}, ["hwk", "pin", "mfa"], LOA_4),
    ],
)
def test_usb_key_login_claims_hardware_only_under_a_hardware_keys_anchor(
    make_app: Callable[..., Flask],
    test_pki: TestPki,
    clock: FixedClock,
    anchor: dict[str, Any],
    amr: list[str],
    acr: str,
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki, **anchor)])
    issued, _view = person_with_account(test_pki, app, clock)
    client = app.test_client()
    response = token_login(client, issued)
    assert response.status_code == 200, response.json
    assert response.json["amr"] == amr and response.json["acr"] == acr
    assert session_claims(client) == (amr, acr)
    account_page = client.get("/api/v1/account").json
    assert account_page["amr"] == amr and account_page["acr"] == acr


@pytest.mark.parametrize(
    ("anchor", "amr"),
    [({}, ["x509"]), ({"hardware_keys": True}, ["x509", "hwk"])],
)
def test_tls_login_claims_x509_and_hwk_only_under_a_hardware_keys_anchor(
    make_app: Callable[..., Flask],
    test_pki: TestPki,
    clock: FixedClock,
    anchor: dict[str, Any],
    amr: list[str],
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki, **anchor)])
    issued, _view = person_with_account(test_pki, app, clock)
    client, response = tls_login(app, issued)
    assert response.status_code == 200, response.json
    # The proxy's handshake shows no PIN: level 3 even for a hardware key.
    assert response.json["amr"] == amr and response.json["acr"] == LOA_3
    assert session_claims(client) == (amr, LOA_3)


def test_password_login_is_pwd_at_level_1(app: Flask, clock: FixedClock) -> None:
    get_accounts(app).create_person(
        real_name="张三",
        id_card_number=random_id_card_number(),
        login_name="zhangsan",
        password=PASSWORD,
        at=clock.now(),
    )
    client = app.test_client()
    response = post_json(
        client, "/api/v1/login/password", {"identifier": "zhangsan", "password": PASSWORD}
    )
    assert response.status_code == 200, response.json
    assert response.json["amr"] == ["pwd"] and response.json["acr"] == LOA_1
    assert session_claims(client) == (["pwd"], LOA_1)


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_hardware_keys_must_be_a_boolean(
    make_app: Callable[..., Flask], test_pki: TestPki, value: Any
) -> None:
    with pytest.raises(ConfigError, match=r"trust.anchors\[0\].hardware_keys: true or false"):
        make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki, hardware_keys=value)])


def test_certgate_trust_add_hardware_keys_is_listed_and_used(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    test_pki: TestPki,
    clock: FixedClock,
) -> None:
    monkeypatch.chdir(tmp_path)
    database_url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = {
        "CERTGATE_DATABASE_URL": database_url,
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
    }
    runner = CliRunner()
    root = str(test_pki.ca_certificate_path("root"))
    intermediates = [
        arg
        for ca in ("rsa", "p256")
        for arg in ("--intermediate", str(test_pki.ca_certificate_path(ca)))
    ]
    crls = [arg for ca in ("rsa", "p256", "root") for arg in ("--crl", str(test_pki.crl_path(ca)))]
    added = runner.invoke(
        main, ["trust", "add", root, "--hardware-keys", *intermediates, *crls], env=env
    )
    assert added.exit_code == 0, added.output
    assert "hardware_keys=true" in added.output
    listed = runner.invoke(main, ["trust", "list", "--json"], env=env)
    assert [json.loads(line)["hardware_keys"] for line in listed.output.splitlines()] == [True]
    assert "hardware_keys=true" in runner.invoke(main, ["trust", "list"], env=env).output

    app = create_app(
        {
            "CONFIG_FILE": None,
            "DATABASE_URL": database_url,
            "DATA_KEY": DATA_KEY,
            "PUBLIC_ORIGIN": ORIGIN,
            "CLOCK": clock,
        }
    )
    try:
        issued, _view = person_with_account(test_pki, app, clock)
        response = token_login(app.test_client(), issued)
        assert response.status_code == 200, response.json
        assert response.json["amr"] == ["hwk", "pin", "mfa"]
    finally:
        close_app(app)


def test_trust_add_without_the_flag_lists_hardware_keys_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_pki: TestPki
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "CERTGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
    }
    runner = CliRunner()
    root = str(test_pki.ca_certificate_path("root"))
    assert runner.invoke(main, ["trust", "add", root], env=env).exit_code == 0
    listed = runner.invoke(main, ["trust", "list", "--json"], env=env)
    assert [json.loads(line)["hardware_keys"] for line in listed.output.splitlines()] == [False]


@pytest.fixture
def served(make_app: Callable[..., Flask], test_pki: TestPki) -> Iterator[tuple[Flask, str]]:
    with serving(threads=2) as server:
        app = make_app(PUBLIC_ORIGIN=server.url, TRUST_ANCHORS=[pki_anchor_config(test_pki)])
        server.app = app
        server.start()
        yield app, server.url


def test_a_softhsm_key_signs_in_as_a_software_key(
    served: tuple[Flask, str], make_softhsm_token: MakeSoftHsmToken
) -> None:
    # SoftHSM keeps its keys in files: a real PKCS#11 token that is not hardware, which is why
    # the default anchor setting must not claim "hwk".
    app, url = served
    number = random_id_card_number()
    credential = make_softhsm_token(key="p256", ca="p256", id_number=number, name="张三")
    get_accounts(app).create_person(
        real_name="张三", id_card_number=number, at=app.extensions["certgate.clock"].now()
    )
    result = CliRunner().invoke(
        agent,
        [
            "login",
            url,
            "--module",
            SOFTHSM_MODULE,
            "--token",
            credential.token_label,
            "--cert-id",
            credential.cert_id.hex(),
            "--json",
        ],
        input=credential.pin + "\n",
        env={"CERTGATE_PIN": None},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["amr"] == ["swk", "pin"]
