"""The account page's certificate details (subject, issuer, expiry, last used) are kept in the
database: they survive a restart, and the subject is stored sealed like other personal data."""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from flask import Flask
from sqlalchemy import select

from gateway.accounts import get_accounts
from gateway.certificates import get_certificates
from gateway.clock import FixedClock
from gateway.storage.database import get_database
from gateway.storage.models import CertificateDetails
from softhsm.pki import TestPki, random_id_card_number
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import ORIGIN, pki_anchor_config
from tests.gateway.test_token_login import token_login


def test_bound_certificate_details_survive_a_restart(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])
    issued = test_pki.issue("person", "钱七", id_number=random_id_card_number(), at=PKI_EPOCH)
    thumbprint = issued.certificate.fingerprint(hashes.SHA256()).hex()
    accounts = get_accounts(app)
    view = accounts.create_person(
        real_name="钱七", id_card_number=random_id_card_number(), at=clock.now()
    )
    accounts.bind(view.id, "sha256", thumbprint, at=clock.now())
    client = app.test_client()
    assert token_login(client, issued).status_code == 200

    listed = client.get("/api/v1/account/certificates", headers={"Origin": ORIGIN}).json
    (entry,) = listed["certificates"]
    assert entry["subject"] == issued.certificate.subject.rfc4514_string()
    assert entry["issuer"] == issued.certificate.issuer.rfc4514_string()
    assert entry["not_after"].startswith(issued.certificate.not_valid_after_utc.date().isoformat())
    assert entry["last_used_at"] is not None

    # A new process on the same database still knows the certificate.
    restarted = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])
    summary = get_certificates(restarted).by_thumbprint(thumbprint)
    assert summary is not None and summary.subject == entry["subject"]
    with get_database(restarted).session() as session:
        sealed = session.scalars(select(CertificateDetails.subject_sealed)).one()
    assert "钱七".encode() not in sealed


def test_issuer_serial_binding_shows_details_once_used(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])
    issued = test_pki.issue("person", "孙八", id_number=random_id_card_number(), at=PKI_EPOCH)
    typed = f"{issued.serial:X}@{issued.certificate.issuer.rfc4514_string().upper()}"
    accounts = get_accounts(app)
    view = accounts.create_person(
        real_name="孙八", id_card_number=random_id_card_number(), at=clock.now()
    )
    accounts.bind(view.id, "issuer_serial", typed, at=clock.now())
    client = app.test_client()
    assert token_login(client, issued).status_code == 200
    listed = client.get("/api/v1/account/certificates", headers={"Origin": ORIGIN}).json
    (entry,) = listed["certificates"]
    assert entry["kind"] == "issuer_serial"
    assert entry["subject"] == issued.certificate.subject.rfc4514_string()
    assert entry["last_used_at"] is not None
