"""Identity extraction from the test PKI's certificates, in each identity placement it offers."""

from __future__ import annotations

import pytest

from certs.identity import extract_identity
from tests.fixtures_pki import PKI_EPOCH

ID_NUMBER = "11010519491231002X"
USCC = "91440300MA5H8REU3K"


@pytest.mark.parametrize("identity_in", ["extension", "subject", "both"])
def test_person_certificates_carry_the_id_card_number(test_pki, identity_in):
    issued = test_pki.issue(
        "person", "张三", id_number=ID_NUMBER, identity_in=identity_in, at=PKI_EPOCH
    )
    identity = extract_identity(issued.certificate)
    assert identity.id_card_number == ID_NUMBER
    assert identity.invalid == ()
    assert identity.serial == format(issued.serial, "x")


@pytest.mark.parametrize("identity_in", ["extension", "subject", "both"])
def test_enterprise_certificates_carry_the_social_credit_code(test_pki, identity_in):
    issued = test_pki.issue(
        "enterprise", "某某建设有限公司", uscc=USCC, identity_in=identity_in, at=PKI_EPOCH
    )
    identity = extract_identity(issued.certificate)
    assert identity.unified_social_credit_code == USCC
    assert identity.invalid == ()


@pytest.mark.parametrize(
    ("kind", "identifier", "field"),
    [
        ("person", {"id_number": "110105194912310021"}, "id_card_number"),
        ("enterprise", {"uscc": "91440300MA5H8REU3J"}, "unified_social_credit_code"),
    ],
)
def test_bad_checksums_from_the_pki_are_flagged(test_pki, kind, identifier, field):
    issued = test_pki.issue(
        kind, "持有人", **identifier, identity_in="both", check_identifiers=False, at=PKI_EPOCH
    )
    identity = extract_identity(issued.certificate)
    assert getattr(identity, field) is None
    assert [i.field for i in identity.invalid] == [field]


def test_a_login_reads_the_issuer_dn_and_thumbprint_it_already_has(test_pki):
    """The login path passes the validated issuer and the thumbprint it computed: the identity
    is the same as one read from the certificate alone, issuer+serial binding key included."""
    issued = test_pki.issue("enterprise", "某某建设有限公司", uscc=USCC, at=PKI_EPOCH)
    alone = extract_identity(issued.certificate)
    given = extract_identity(issued.certificate, issuer=issued.chain[0], sha256=alone.sha256)
    assert given == alone
    assert given.issuer_serial == alone.issuer_serial
    # The per-CA cache answers for the issuer, not for whichever certificate asked first.
    other = test_pki.issue("enterprise", "另一家公司", uscc=USCC, ca="p256", at=PKI_EPOCH)
    assert (
        extract_identity(other.certificate, issuer=other.chain[0]).issuer_dn
        == extract_identity(other.certificate).issuer_dn
        != alone.issuer_dn
    )
