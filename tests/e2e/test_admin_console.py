"""The operator console in Chromium: an operator signs in with password and TOTP (the code
computed here as an authenticator app does), adds a trust anchor from a PEM, tests a user
certificate against the mapping rules, freezes an account (its next certificate login gets
``account_disabled`` and the CAS application it used is queued a single logout), then verifies
and exports the audit trail. The account and the application are this test's own, and the
account is reactivated at the end, so the other tests' accounts are untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.hazmat.primitives.serialization import Encoding
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import expect
from sqlalchemy import select

from gateway.accounts import get_accounts
from gateway.admin import totp
from gateway.admin.operators import get_operators
from gateway.audit import get_audit_log, parse_checkpoint
from gateway.clock import EXTENSION as CLOCK
from gateway.sso.clients import get_clients
from gateway.sso.models import LogoutDelivery
from gateway.storage.database import get_database
from softhsm.pki import IssuedCertificate, TestPki, random_id_card_number
from tests.e2e.conftest import ConsoleWatch, Stack, screenshot, scripts_ready
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.test_token_login import message, token_login

OPERATOR = "e2e-admin"
OPERATOR_PASSWORD = "e2e-operator-password"
SERVICE = "http://127.0.0.1:9/e2e-cas-app/"


def certificate_login(app: Flask, url: str, issued: IssuedCertificate) -> tuple[Any, FlaskClient]:
    """A USB-key-style login (challenge signed with the certificate's key) from a script."""
    browser = app.test_client()
    challenge = browser.post("/api/v1/login/challenge", headers={"Origin": url}).json
    answer = token_login(
        browser, issued, challenge=challenge, signed=message(challenge, url),
        headers={"Origin": url},
    )  # fmt: skip
    return answer, browser


def test_operator_console(
    page: Any, stack: Stack, console: ConsoleWatch, test_pki: TestPki
) -> None:
    app = stack.app
    clock = app.extensions[CLOCK]
    made = get_operators(app).create(OPERATOR, "admin", OPERATOR_PASSWORD, at=clock.now())
    secret = parse_qs(urlsplit(made.totp_uri).query)["secret"][0]
    # A person with a certificate who also signs in to a CAS application.
    number = random_id_card_number()
    issued = test_pki.issue("person", "钱七", id_number=number, ca="p256", key="p256",
                            at=PKI_EPOCH)  # fmt: skip
    person = get_accounts(app).create_person(real_name="钱七", id_card_number=number,
                                             at=clock.now())  # fmt: skip
    client_id = get_clients(app).add("E2E CAS", protocol="cas", at=clock.now(),
                                     services=(SERVICE,)).client.client_id  # fmt: skip
    answer, user = certificate_login(app, stack.url, issued)
    assert answer.status_code == 200, answer.json
    ticket_at = user.get("/cas/login?" + urlencode({"service": SERVICE}))
    ticket = parse_qs(urlsplit(ticket_at.headers["Location"]).query)["ticket"][0]
    validated = user.get("/cas/p3/serviceValidate?" + urlencode({"service": SERVICE,
                                                                 "ticket": ticket}))  # fmt: skip
    assert b"authenticationSuccess" in validated.data

    try:
        console.allow(401, "/admin/api/session")  # the page asks whether a session exists
        page.goto("/admin/")
        scripts_ready(page, "admin")
        expect(page.locator("#admin-login")).to_be_visible()
        page.fill("#admin-name", OPERATOR)
        page.fill("#admin-password", OPERATOR_PASSWORD)
        page.fill("#admin-totp", totp.code_at(secret, clock.now()))
        page.click("#admin-login-submit")
        expect(page.locator("#admin-operator")).to_contain_text(OPERATOR)
        expect(page.locator("#admin-console")).to_be_visible()

        # A trust anchor from a PEM: the P-256 CA, with its CRL.
        page.fill("#trust-pem", test_pki.ca_certificate_path("p256").read_text())
        page.fill("#trust-name", "E2E P-256 CA")
        page.fill("#trust-crl", str(test_pki.crl_path("p256")))
        page.click("#trust-add-submit")
        expect(page.locator('tr[data-anchor="E2E P-256 CA"]')).to_contain_text("hard-fail")

        # Which account would this certificate reach?
        chain = (issued.certificate, *issued.chain[:-1])
        page.fill("#mapping-pem", "".join(c.public_bytes(Encoding.PEM).decode() for c in chain))
        page.click("#mapping-submit")
        expect(page.locator("#mapping-result")).to_have_attribute("data-code", "ok")
        expect(page.locator("#mapping-result")).to_contain_text(person.id)
        expect(page.locator("#mapping-result")).to_contain_text("钱*")

        # Freeze the account with a reason.
        page.fill("#account-q", person.id)
        page.click("#account-search-submit")
        row = page.locator(f'li[data-account="{person.id}"]')
        expect(row).to_contain_text("钱*")
        page.fill("#account-reason", "证书疑似被冒用")
        row.locator('button[data-decision="freeze"]').click()
        expect(page.locator(f'li[data-account="{person.id}"]')).to_contain_text("frozen")
        screenshot(page, "admin-console-frozen")

        again, _ = certificate_login(app, stack.url, issued)
        assert (again.status_code, again.json["error"]) == (403, "account_disabled")
        with get_database(app).session() as session:
            told = session.scalars(
                select(LogoutDelivery.reason).where(LogoutDelivery.client_id == client_id)
            ).all()
        assert told == ["account_frozen"]

        # The audit trail: verified, then exported with a signed checkpoint.
        page.click("#audit-verify")
        expect(page.locator("#audit-verdict")).to_have_attribute("data-ok", "true")
        page.click("#audit-export-submit")
        expect(page.locator("#audit-checkpoint")).to_be_visible()
        line = page.locator("#audit-checkpoint").inner_text()
        assert get_audit_log(app).checkpoint_is_genuine(parse_checkpoint(line))
        with page.expect_download() as download:
            page.click("#audit-download")
        exported = Path(download.value.path()).read_text(encoding="utf-8")
        assert "account_frozen" in exported and f"operator {OPERATOR}" in exported
        frozen = [r for r in get_audit_log(app).records() if r.event == "account_frozen"]
        assert frozen and f"operator {OPERATOR}" in (frozen[-1].detail or "")
    finally:
        get_accounts(app).set_status(person.id, "active", at=clock.now())
        get_clients(app).remove(client_id)
