"""Which account a certificate signs in to over HTTP token login: issuer+serial bindings typed by
an operator, and renewed certificates that keep their account without re-binding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from certs.identity import extract_identity
from gateway.accounts import AccountInputError, get_accounts
from gateway.cli import main
from gateway.clock import FixedClock
from softhsm.pki import IssuedCertificate, TestPki, random_id_card_number, random_uscc
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import DATA_KEY, ORIGIN, pki_anchor_config
from tests.gateway.test_token_login import token_login


def typed_issuer_serial(issued: IssuedCertificate, style: str) -> str:
    """The certificate's issuer+serial as an operator might copy it from another tool."""
    serial = format(issued.certificate.serial_number, "x")
    issuer = issued.certificate.issuer.rfc4514_string()  # CN=...,OU=...,O=...,C=CN
    spellings = {
        # openssl x509 -serial prints upper-case hex; viewers add a leading 00 and colons.
        "openssl": f"{serial.upper()}@{issuer.replace(',', ', ')}",
        "colons": ":".join(f"{b:02X}" for b in bytes.fromhex(f"00{serial:0>32}"))
        + "@"
        + issuer.upper().replace(",", " ,  ").replace(" ,", ","),
        "lower": f"0x{serial}@{issuer.lower()}".replace("test pki", "test   pki"),
    }
    return spellings[style]


@pytest.fixture
def bindings_app(make_app: Callable[..., Flask], test_pki: TestPki) -> Flask:
    return make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])


def stranger_and_account(
    pki: TestPki, app: Flask, clock: FixedClock
) -> tuple[IssuedCertificate, str]:
    """A certificate whose ID number has no account, and another person's account."""
    issued = pki.issue("person", "孙八", id_number=random_id_card_number(), at=PKI_EPOCH)
    view = get_accounts(app).create_person(
        real_name="周九", id_card_number=random_id_card_number(), at=clock.now()
    )
    return issued, view.id


@pytest.mark.parametrize("style", ["openssl", "colons", "lower"])
def test_issuer_serial_binding_typed_by_an_operator_signs_in(
    bindings_app: Flask, test_pki: TestPki, clock: FixedClock, style: str
) -> None:
    issued, account_id = stranger_and_account(test_pki, bindings_app, clock)
    client = bindings_app.test_client()
    assert token_login(client, issued).json["error"] == "account_not_found"

    accounts = get_accounts(bindings_app)
    typed = typed_issuer_serial(issued, style)
    view = accounts.bind(account_id, "issuer_serial", typed, at=clock.now())
    # Stored in the form the mapping looks up, whatever the operator typed.
    assert view.bindings == (("issuer_serial", extract_identity(issued.certificate).issuer_serial),)
    response = token_login(client, issued)
    assert response.status_code == 200, response.json
    assert response.json["account"]["id"] == account_id

    # The same certificate typed another way is the same binding.
    other_style = "lower" if style != "lower" else "openssl"
    with pytest.raises(AccountInputError, match="already bound"):
        accounts.bind(
            account_id, "issuer_serial", typed_issuer_serial(issued, other_style), at=clock.now()
        )
    accounts.unbind(account_id, "issuer_serial", typed_issuer_serial(issued, other_style))
    assert token_login(client, issued).json["error"] == "account_not_found"


def test_certgate_account_bind_issuer_serial_signs_in(
    bindings_app: Flask,
    test_pki: TestPki,
    clock: FixedClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued, account_id = stranger_and_account(test_pki, bindings_app, clock)
    monkeypatch.chdir(tmp_path)
    env = {
        "CERTGATE_DATABASE_URL": bindings_app.config["DATABASE_URL"],
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
    }
    typed = typed_issuer_serial(issued, "colons")
    result = CliRunner().invoke(
        main, ["account", "bind", account_id, "--issuer-serial", typed], env=env
    )
    assert result.exit_code == 0, result.output
    response = token_login(bindings_app.test_client(), issued)
    assert response.status_code == 200, response.json
    assert response.json["account"]["id"] == account_id


@pytest.mark.parametrize(
    "typed", ["zz@CN=x", "01@", "01@not a distinguished name"], ids=["serial", "empty", "dn"]
)
def test_bad_issuer_serial_is_refused(bindings_app: Flask, clock: FixedClock, typed: str) -> None:
    accounts = get_accounts(bindings_app)
    view = accounts.create_person(
        real_name="吴十", id_card_number=random_id_card_number(), at=clock.now()
    )
    with pytest.raises(AccountInputError, match="binding"):
        accounts.bind(view.id, "issuer_serial", typed, at=clock.now())


def _enterprise(pki: TestPki, app: Flask, clock: FixedClock) -> tuple[dict[str, Any], str]:
    uscc = random_uscc()
    view = get_accounts(app).create_enterprise(
        unified_social_credit_code=uscc, name="示例建设有限公司", at=clock.now()
    )
    return {"kind": "enterprise", "name": "示例建设有限公司", "uscc": uscc}, view.id


def _person(pki: TestPki, app: Flask, clock: FixedClock) -> tuple[dict[str, Any], str]:
    number = random_id_card_number()
    view = get_accounts(app).create_person(
        real_name="郑十一", id_card_number=number, at=clock.now()
    )
    return {"kind": "person", "name": "郑十一", "id_number": number}, view.id


@pytest.mark.parametrize("holder", [_enterprise, _person], ids=["same-uscc", "same-id-number"])
def test_renewed_certificate_keeps_its_account_without_rebinding(
    bindings_app: Flask, test_pki: TestPki, clock: FixedClock, holder: Callable[..., Any]
) -> None:
    subject, account_id = holder(test_pki, bindings_app, clock)
    kind, name = subject.pop("kind"), subject.pop("name")
    first = test_pki.issue(kind, name, key="rsa2048", ca="rsa", at=PKI_EPOCH, **subject)
    # Renewal: a new key (even a new algorithm and issuing CA), a new serial, the same identifier.
    renewed = test_pki.issue(kind, name, key="p256", ca="p256", at=PKI_EPOCH, **subject)
    assert renewed.serial != first.serial
    assert renewed.certificate.public_key() != first.certificate.public_key()

    for issued in (first, renewed):
        response = token_login(bindings_app.test_client(), issued)
        assert response.status_code == 200, response.json
        assert response.json["account"]["id"] == account_id
    assert get_accounts(bindings_app).find(account_id).bindings == []
