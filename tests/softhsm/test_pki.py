"""softhsm.pki: certificate shapes, CRLs, the OpenSSL index, refusals (no network)."""

from __future__ import annotations

import json
import random
import stat
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.identifiers import is_valid_id_card_number, is_valid_uscc
from softhsm.pki import (
    ID_CARD_NUMBER_OID,
    USCC_OID,
    PkiInputError,
    PkiNotFound,
    TestPki,
    UnknownSerial,
    random_id_card_number,
    random_uscc,
)
from softhsm.pki_files import serial_hex
from tests.fixtures_pki import PKI_EPOCH, PKI_VALIDATION_TIME, create_test_pki

USCC = "91110000600037341L"
ID_NUMBER = "11010519491231002X"


def extension_value(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes:
    extension = certificate.extensions.get_extension_for_oid(oid)
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    assert extension.critical is False
    return extension.value.value


def openssl_verify(
    pki: TestPki, certificate_path: Path, ca: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl", "verify",
            "-attime", str(int(PKI_VALIDATION_TIME.timestamp())),
            "-purpose", "sslclient",
            "-CAfile", str(pki.ca_certificate_path("root")),
            "-untrusted", str(pki.ca_certificate_path(ca)),
            str(certificate_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


# --- the CAs -------------------------------------------------------------------------------------


def test_root_is_self_signed_ca_with_path_length_one(test_pki: TestPki) -> None:
    root = test_pki.root_certificate
    assert root.subject == root.issuer
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 1
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert root.not_valid_before_utc == PKI_EPOCH


@pytest.mark.parametrize(
    ("ca", "key_type"), [("rsa", rsa.RSAPublicKey), ("p256", ec.EllipticCurvePublicKey)]
)
def test_intermediates_chain_to_the_root(test_pki: TestPki, ca: str, key_type: type) -> None:
    intermediate = test_pki.intermediate_certificate(ca)
    assert isinstance(intermediate.public_key(), key_type)
    intermediate.verify_directly_issued_by(test_pki.root_certificate)
    constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert test_pki.chain(ca) == [intermediate, test_pki.root_certificate]
    points = intermediate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == test_pki.crl_url("root")


def test_ocsp_signers_are_delegated(test_pki: TestPki) -> None:
    for ca in ("rsa", "p256", "root"):
        cert_path, key_path = test_pki.ocsp_signer_paths(ca)
        signer = x509.load_pem_x509_certificate(cert_path.read_bytes())
        signer.verify_directly_issued_by(test_pki.authority(ca).certificate)
        usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.OCSP_SIGNING]
        signer.extensions.get_extension_for_class(x509.OCSPNoCheck)
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_private_keys_are_owner_only(test_pki: TestPki) -> None:
    keys = list(test_pki.directory.rglob("*.key"))
    assert keys
    assert {stat.S_IMODE(path.stat().st_mode) for path in keys} == {0o600}


# --- leaf certificates -------------------------------------------------------------------------


def test_enterprise_certificate_shape(test_pki: TestPki) -> None:
    issued = test_pki.issue("enterprise", "测试建设有限公司", uscc=USCC, at=PKI_EPOCH)
    certificate = issued.certificate
    subject = certificate.subject
    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "CN"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "测试建设有限公司"
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "测试建设有限公司"
    assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == USCC
    assert extension_value(certificate, USCC_OID) == b"\x13\x12" + USCC.encode()
    assert not subject.get_attributes_for_oid(USCC_OID)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_leaf_points_at_the_local_crl_and_ocsp(test_pki: TestPki) -> None:
    certificate = test_pki.issue("person", "张三", id_number=ID_NUMBER, ca="p256").certificate
    points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [p.full_name[0].value for p in points] == [test_pki.crl_url("p256")]
    access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp_urls = [
        d.access_location.value
        for d in access
        if d.access_method == x509.AuthorityInformationAccessOID.OCSP
    ]
    assert ocsp_urls == [test_pki.ocsp_url("p256")]
    assert test_pki.ocsp_url("p256") != test_pki.ocsp_url("rsa")
    assert test_pki.crl_url("p256") == f"http://127.0.0.1:{test_pki.crl_port}/p256.crl"


def test_serial_is_sixteen_positive_bytes_and_keys_are_identified(test_pki: TestPki) -> None:
    issued = test_pki.issue("person", "李四", id_number=ID_NUMBER)
    assert issued.serial > 0 and issued.serial.bit_length() == 127
    ski = issued.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = issued.certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuer_ski = test_pki.intermediate_certificate().extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    assert aki.key_identifier == issuer_ski.value.digest
    assert (
        ski.digest
        == x509.SubjectKeyIdentifier.from_public_key(issued.certificate.public_key()).digest
    )


@pytest.mark.parametrize(
    ("key", "ca", "key_type"),
    [
        ("rsa2048", "rsa", rsa.RSAPrivateKey),
        ("p256", "p256", ec.EllipticCurvePrivateKey),
        ("ed25519", "rsa", ed25519.Ed25519PrivateKey),
        ("ed25519", "p256", ed25519.Ed25519PrivateKey),
    ],
)
def test_person_certificate_verifies_with_openssl(
    test_pki: TestPki, key: str, ca: str, key_type: type
) -> None:
    issued = test_pki.issue(
        "person",
        "王五",
        id_number=ID_NUMBER,
        key=key,
        ca=ca,
        at=PKI_EPOCH,  # type: ignore[arg-type]
    )
    assert isinstance(issued.private_key, key_type)
    assert issued.key_path is not None and issued.key_path.exists()
    assert (
        extension_value(issued.certificate, ID_CARD_NUMBER_OID) == b"\x13\x12" + ID_NUMBER.encode()
    )
    assert issued.chain == test_pki.chain(ca)
    result = openssl_verify(test_pki, issued.cert_path, ca)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_identity_in_subject_or_both(test_pki: TestPki) -> None:
    in_subject = test_pki.issue("person", "赵六", id_number=ID_NUMBER, identity_in="subject")
    assert (
        in_subject.certificate.subject.get_attributes_for_oid(ID_CARD_NUMBER_OID)[0].value
        == ID_NUMBER
    )
    with pytest.raises(x509.ExtensionNotFound):
        in_subject.certificate.extensions.get_extension_for_oid(ID_CARD_NUMBER_OID)
    both = test_pki.issue("enterprise", "某公司", uscc=USCC, identity_in="both").certificate
    assert both.subject.get_attributes_for_oid(USCC_OID)[0].value == USCC
    assert extension_value(both, USCC_OID).endswith(USCC.encode())


def test_cfca_style_common_name_and_custom_usages(test_pki: TestPki) -> None:
    cn = f"041@0{ID_NUMBER}@张三@00000001"
    issued = test_pki.issue(
        "person",
        "张三",
        id_number=ID_NUMBER,
        common_name=cn,
        key_usage=("digital_signature", "content_commitment"),
        extended_key_usage=(),
    )
    assert issued.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    assert issued.certificate.extensions.get_extension_for_class(
        x509.KeyUsage
    ).value.content_commitment
    with pytest.raises(x509.ExtensionNotFound):
        issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_issue_for_a_key_held_elsewhere(test_pki: TestPki) -> None:
    token_key = ec.generate_private_key(ec.SECP256R1())
    issued = test_pki.issue(
        "person", "孙七", id_number=ID_NUMBER, public_key=token_key.public_key()
    )
    assert issued.private_key is None and issued.key_path is None
    assert issued.certificate.public_key() == token_key.public_key()


def test_validity_and_not_before(test_pki: TestPki) -> None:
    starts = PKI_EPOCH + timedelta(days=3)
    certificate = test_pki.issue(
        "person", "周八", id_number=ID_NUMBER, valid_days=30, not_before=starts
    ).certificate
    assert certificate.not_valid_before_utc == starts
    assert certificate.not_valid_after_utc == starts + timedelta(days=30)


def test_invalid_identifier_allowed_only_when_asked(test_pki: TestPki) -> None:
    bad = USCC[:-1] + "M"
    with pytest.raises(PkiInputError, match="check character"):
        test_pki.issue("enterprise", "坏公司", uscc=bad)
    issued = test_pki.issue("enterprise", "坏公司", uscc=bad, check_identifiers=False)
    assert extension_value(issued.certificate, USCC_OID).endswith(bad.encode())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"kind": "enterprise", "uscc": "91110000600037341M"},
            "invalid unified social credit code",
        ),
        ({"kind": "enterprise", "uscc": "ABC"}, "invalid unified social credit code"),
        ({"kind": "person", "id_number": "110105194912310021"}, "invalid ID-card number"),
        ({"kind": "person", "id_number": "11010519491331002X"}, "invalid ID-card number"),
        ({"kind": "person", "uscc": USCC}, "needs --id-number"),
        ({"kind": "enterprise", "id_number": ID_NUMBER}, "needs --uscc"),
        ({"kind": "person"}, "needs --id-number"),
        ({"kind": "robot", "id_number": ID_NUMBER}, "unknown certificate kind"),
        ({"kind": "person", "id_number": ID_NUMBER, "ca": "root"}, "unknown issuing CA"),
        ({"kind": "person", "id_number": ID_NUMBER, "key": "dsa"}, "unknown key type"),
        ({"kind": "person", "id_number": ID_NUMBER, "valid_days": 0}, "at least 1"),
        ({"kind": "person", "id_number": ID_NUMBER, "key_usage": ("sign",)}, "unknown key usage"),
        ({"kind": "person", "id_number": ID_NUMBER, "name": " "}, "name must be"),
        ({"kind": "person", "id_number": ID_NUMBER, "name": "a\tb"}, "name must be"),
    ],
)
def test_issue_refuses_bad_input(test_pki: TestPki, arguments: dict, message: str) -> None:
    arguments = {"name": "某人", **arguments}
    with pytest.raises(PkiInputError, match=message):
        test_pki.issue(**arguments)


# --- revocation, CRLs and the OpenSSL index ----------------------------------------------------


def test_revoke_publishes_a_new_crl(test_pki: TestPki) -> None:
    issued = test_pki.issue("person", "吴九", id_number=ID_NUMBER, at=PKI_EPOCH)
    before = test_pki.crl("rsa")
    revoked_at = PKI_EPOCH + timedelta(days=2)
    test_pki.revoke(issued.serial, reason="key_compromise", at=revoked_at)
    crl = test_pki.crl("rsa")
    assert crl.is_signature_valid(test_pki.intermediate_certificate("rsa").public_key())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    assert crl.last_update_utc == revoked_at
    assert crl.next_update_utc == revoked_at + timedelta(days=7)
    entry = crl.get_revoked_certificate_by_serial_number(issued.serial)
    assert entry is not None and entry.revocation_date_utc == revoked_at
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    assert (
        test_pki.crl_path("rsa").with_suffix(".pem").read_bytes().startswith(b"-----BEGIN X509 CRL")
    )
    index = test_pki.index_path("rsa").read_text(encoding="utf-8")
    line = next(row for row in index.splitlines() if f"\t{serial_hex(issued.serial)}\t" in row)
    assert line.split("\t")[:3] == ["R", "270101000000Z", "260103000000Z,keyCompromise"]


def test_unspecified_reason_is_left_out_of_the_crl(test_pki: TestPki) -> None:
    issued = test_pki.issue("person", "郑十", id_number=ID_NUMBER, ca="p256")
    test_pki.revoke(issued.serial)
    entry = test_pki.crl("p256").get_revoked_certificate_by_serial_number(issued.serial)
    assert entry is not None
    assert len(entry.extensions) == 0
    assert test_pki.crl("p256").is_signature_valid(
        test_pki.intermediate_certificate("p256").public_key()
    )


def test_revoking_an_intermediate_updates_the_root_crl(tmp_path: Path) -> None:
    pki = create_test_pki(tmp_path / "pki")
    intermediate = pki.intermediate_certificate("p256")
    pki.revoke(intermediate.serial_number, reason="ca_compromise", at=PKI_EPOCH)
    assert pki.issuing_ca(intermediate.serial_number) == "root"
    root_crl = pki.crl("root")
    assert root_crl.get_revoked_certificate_by_serial_number(intermediate.serial_number)
    assert root_crl.is_signature_valid(pki.root_certificate.public_key())
    assert (
        pki.crl("rsa").get_revoked_certificate_by_serial_number(intermediate.serial_number) is None
    )


def test_valid_certificates_are_in_the_index_and_subjects_may_repeat(test_pki: TestPki) -> None:
    first = test_pki.issue("person", "重名", id_number=ID_NUMBER)
    second = test_pki.issue("person", "重名", id_number=ID_NUMBER)
    rows = test_pki.index_path("rsa").read_text(encoding="utf-8").splitlines()
    for issued in (first, second):
        assert any(row.startswith("V\t") and serial_hex(issued.serial) in row for row in rows)
    attr = Path(f"{test_pki.index_path('rsa')}.attr").read_text()
    assert attr.strip() == "unique_subject = no"


@pytest.mark.parametrize(
    ("action", "error", "message"),
    [
        (lambda pki: pki.revoke(12345), UnknownSerial, "no certificate with serial 3039"),
        (
            lambda pki: pki.revoke(pki.root_certificate.serial_number),
            UnknownSerial,
            "no certificate",
        ),
        (lambda pki: pki.crl("ecc"), PkiInputError, "unknown CA"),
        (lambda pki: pki.intermediate_certificate("root"), PkiInputError, "unknown issuing CA"),
    ],
)
def test_lookups_refuse_unknown_names(test_pki: TestPki, action, error, message) -> None:
    with pytest.raises(error, match=message):
        action(test_pki)


def test_revoke_refuses_bad_reason_and_double_revocation(test_pki: TestPki) -> None:
    issued = test_pki.issue("person", "钱一", id_number=ID_NUMBER)
    with pytest.raises(PkiInputError, match="unknown revocation reason"):
        test_pki.revoke(issued.serial, reason="remove_from_crl")
    test_pki.revoke(issued.serial, reason="superseded")
    with pytest.raises(PkiInputError, match="already revoked"):
        test_pki.revoke(issued.serial)


# --- opening ---------------------------------------------------------------------------------


def test_open_reads_back_the_state(test_pki: TestPki) -> None:
    issued = test_pki.issue("enterprise", "回读公司", uscc=USCC)
    reopened = TestPki.open(test_pki.directory)
    assert reopened.root_certificate == test_pki.root_certificate
    assert reopened.ocsp_url("root") == test_pki.ocsp_url("root")
    assert reopened.issued_serials()[issued.serial]["kind"] == "enterprise"
    assert reopened.certificate(issued.serial) == issued.certificate


def test_open_refuses_missing_and_corrupt_folders(tmp_path: Path) -> None:
    with pytest.raises(PkiNotFound, match="does not exist"):
        TestPki.open(tmp_path / "absent")
    with pytest.raises(PkiNotFound, match="holds no test PKI"):
        TestPki.open(tmp_path)
    (tmp_path / "pki.json").write_text("{not json")
    with pytest.raises(PkiNotFound, match="unreadable"):
        TestPki.open(tmp_path)
    (tmp_path / "pki.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(PkiNotFound, match="format-1"):
        TestPki.open(tmp_path)


def test_create_refuses_an_existing_pki(test_pki: TestPki) -> None:
    with pytest.raises(PkiInputError, match="already holds"):
        TestPki.create(test_pki.directory)


# --- identifiers ------------------------------------------------------------------------------


def test_random_identifiers_are_checksum_valid() -> None:
    rng = random.Random(20260101)
    for _ in range(200):
        assert is_valid_uscc(random_uscc(rng))
        assert is_valid_id_card_number(random_id_card_number(rng))
    assert is_valid_uscc(random_uscc()) and is_valid_id_card_number(random_id_card_number())
