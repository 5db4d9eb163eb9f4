"""`certgate agent login` (the token package's script login) against the real gateway, served by
waitress in this process, with a SoftHSM token whose certificate comes from the test PKI."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner
from flask import Flask

from gateway.accounts import get_accounts
from softhsm.pki import TestPki, random_id_card_number
from tests.fixtures_sm2_ukey import MakeSm2Token
from tests.fixtures_softhsm import MakeSoftHsmToken
from tests.gateway.conftest import pki_anchor_config
from tests.gateway.serving import serving
from tokens.cli import agent
from tokens.pkcs11 import SOFTHSM_MODULE


@pytest.fixture
def served(make_app: Callable[..., Flask], test_pki: TestPki) -> Iterator[tuple[Flask, str]]:
    with serving(threads=2) as server:
        app = make_app(PUBLIC_ORIGIN=server.url, TRUST_ANCHORS=[pki_anchor_config(test_pki)])
        server.app = app
        server.start()
        yield app, server.url


@pytest.mark.parametrize("key", ["rsa2048", "p256"])
def test_agent_login_signs_in(
    served: tuple[Flask, str],
    make_softhsm_token: MakeSoftHsmToken,
    key: str,
) -> None:
    app, url = served
    number = random_id_card_number()
    credential = make_softhsm_token(
        key=key, ca="p256" if key == "p256" else "rsa", id_number=number, name="张三"
    )
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
        ],
        input=credential.pin + "\n",
        env={"CERTGATE_PIN": None},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "张三" in result.stdout and "certgate_session=" in result.stdout
    session = [r for r in app.extensions["certgate.audit"].records() if r.method == "token"]
    assert [r.outcome for r in session] == ["ok"]


@pytest.mark.parametrize(
    ("sm2_options", "exit_code", "expected"),
    [
        (["--sm2-mechanism", "0x80008101"], 0, "李四"),
        (["--sm2-mechanism", "0x80008102", "--sm2-input", "digest"], 0, "李四"),
        # The gateway's trust anchor uses the default signer ID: another one does not verify.
        (["--sm2-mechanism", "0x80008101", "--sm2-signer-id", "ALICE123@YAHOO.COM"], 1,
         "error: signature_invalid"),
        ([], 1, "error: bad_request"),  # the module's SM2 mechanism is not known
    ],
    ids=["token-hashes", "agent-hashes", "other-signer-id", "no-mechanism"],
)  # fmt: skip
def test_agent_login_with_an_sm2_usb_key(
    served: tuple[Flask, str],
    make_sm2_token: MakeSm2Token,
    sm2_options: list[str],
    exit_code: int,
    expected: str,
) -> None:
    app, url = served
    number = random_id_card_number()
    credential = make_sm2_token(id_number=number, name="李四")
    get_accounts(app).create_person(
        real_name="李四", id_card_number=number, at=app.extensions["certgate.clock"].now()
    )
    result = CliRunner().invoke(
        agent,
        ["login", url, "--module", credential.module, *sm2_options,
         "--token", credential.token_label, "--cert-id", credential.cert_id.hex(), "--lang", "en"],
        input=credential.pin + "\n",
        env={"CERTGATE_PIN": None},
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == exit_code, result.output
    assert expected in result.output
    session = [r for r in app.extensions["certgate.audit"].records() if r.method == "token"]
    if exit_code == 0:
        assert "certgate_session=" in result.stdout
        assert [r.outcome for r in session] == ["ok"]
    else:
        assert all(r.outcome != "ok" for r in session)
