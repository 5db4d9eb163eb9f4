"""Certificates as Chinese CAs issue them: encoding quirks, identity fields, real public roots.

The real roots (``tests/certs/data/chinese_ca``, see its README) are public CA certificates; no
certificate of a real holder is used. Chains under a real root cannot be issued here, so chains
with the same quirks are built at test time: a leaf whose basicConstraints writes out ``cA FALSE``
(a DEFAULT value DER forbids; pyca/cryptography refuses it), a root whose basicConstraints is not
critical (as MCSCA's), a unified social credit code in the subject serialNumber. OpenSSL, which
reads BER there, is asked for its verdict on the same chain.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from certs.der import encode_tlv
from certs.errors import CertificateUntrusted
from certs.extensions import basic_constraints, key_usage, read_leniently
from certs.identity import extract_identity
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.validation import ChainValidator

DATA = Path(__file__).parent / "data" / "chinese_ca"
REAL_ROOTS = sorted(DATA.glob("*.pem"))
AT = datetime(2026, 3, 1, tzinfo=UTC)
USCC = "91440300MA5H8REU3K"
ENTERPRISE = "示例建设工程有限公司"
EXPLICIT_CA_FALSE = (
    b"\x30\x03\x01\x01\x00"  # BasicConstraints { cA FALSE } with the DEFAULT written
)
OFF = ValidationPolicy(revocation=RevocationMode.OFF)

ROOT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
ROOT_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CertGate Quirks Test CA"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Quirks Test Root CA RSA"),
    ]
)


def _root() -> x509.Certificate:
    """A root like MCSCA's: basicConstraints cA TRUE, not critical."""
    ski = x509.SubjectKeyIdentifier.from_public_key(ROOT_KEY.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(ROOT_NAME)
        .issuer_name(ROOT_NAME)
        .public_key(ROOT_KEY.public_key())
        .serial_number(0x1D)
        .not_valid_before(AT - timedelta(days=365))
        .not_valid_after(AT + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=False)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(ROOT_KEY, hashes.SHA256())
    )


ROOT = _root()


def _with_extension_value(
    certificate: x509.Certificate, oid: x509.ObjectIdentifier, value: bytes
) -> x509.Certificate:
    """``certificate`` with one extension's value replaced by ``value`` as written, re-signed by
    the test root (pyca/cryptography's builder only writes DER, so the quirk is spliced in)."""
    parsed = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))
    tbs = parsed["tbs_certificate"]
    written = b""
    for extension in tbs["extensions"]:
        content = extension["extn_value"].contents
        if extension["extn_id"].dotted == oid.dotted_string:
            content = value
        critical = b"\x01\x01\xff" if extension["critical"].native else b""
        written += encode_tlv(
            0x30, extension["extn_id"].dump() + critical + encode_tlv(0x04, content)
        )
    fields = b"".join(
        tbs[name].dump()
        for name, *_ in asn1_x509.TbsCertificate._fields
        if name != "extensions" and tbs[name].contents is not None
    )
    tbs_der = encode_tlv(0x30, fields + encode_tlv(0xA3, encode_tlv(0x30, written)))
    signature = ROOT_KEY.sign(tbs_der, padding.PKCS1v15(), hashes.SHA256())
    der = encode_tlv(
        0x30,
        tbs_der + parsed["signature_algorithm"].dump() + encode_tlv(0x03, b"\x00" + signature),
    )
    return x509.load_der_x509_certificate(der)


def _leaf(subject: x509.Name, *, explicit_default: bool = True) -> x509.Certificate:
    """An enterprise login certificate issued by the test root, with cA FALSE written out."""
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ROOT_NAME)
        .public_key(LEAF_KEY.public_key())
        .serial_number(0x5EED)
        .not_valid_before(AT - timedelta(days=30))
        .not_valid_after(AT + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ROOT_KEY.public_key()),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(LEAF_KEY.public_key()), critical=False
        )
        .sign(ROOT_KEY, hashes.SHA256())
    )
    if not explicit_default:
        return built
    return _with_extension_value(built, ExtensionOID.BASIC_CONSTRAINTS, EXPLICIT_CA_FALSE)


ENTERPRISE_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ENTERPRISE),
        x509.NameAttribute(NameOID.COMMON_NAME, ENTERPRISE),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, USCC),
    ]
)
LEAF = _leaf(ENTERPRISE_SUBJECT)


def _pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certificates))
    return path


# --- the quirk itself -----------------------------------------------------------------------


def test_the_built_leaf_has_the_quirk_pyca_refuses():
    with pytest.raises(ValueError):
        LEAF.extensions  # noqa: B018 - pyca/cryptography refuses the explicit DEFAULT
    assert read_leniently(LEAF)
    assert not read_leniently(_leaf(ENTERPRISE_SUBJECT, explicit_default=False))


def test_explicit_default_basic_constraints_read_leniently():
    constraints, critical = basic_constraints(LEAF)
    assert (constraints.ca, constraints.path_length, critical) == (False, None, True)
    usage = key_usage(LEAF)
    assert usage is not None and usage.digital_signature and not usage.key_cert_sign


def test_explicit_default_leaf_identity_is_extracted():
    identity = extract_identity(LEAF)
    assert identity.common_name == ENTERPRISE
    assert identity.subject_serial_number == USCC
    assert identity.unified_social_credit_code == USCC
    assert identity.issuer_dn == "cn=quirks test root ca rsa,o=certgate quirks test ca,c=cn"


def test_chain_with_explicit_default_leaf_validates():
    validator = ChainValidator([TrustAnchor(ROOT, OFF)])
    chain = validator.validate(LEAF, at=AT)
    assert chain.certificates[-1] == ROOT
    assert extract_identity(chain.certificates[0]).unified_social_credit_code == USCC


def test_openssl_agrees_on_the_quirky_chain(tmp_path):
    root = _pem(tmp_path / "root.pem", ROOT)
    leaf = _pem(tmp_path / "leaf.pem", LEAF)
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(root),
            "-attime",
            str(int(AT.timestamp())),
            "-purpose",
            "sslclient",
            str(leaf),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ChainValidator([TrustAnchor(ROOT, OFF)]).validate(LEAF, at=AT)


def test_a_value_no_reading_accepts_is_still_malformed():
    garbage = _with_extension_value(LEAF, ExtensionOID.BASIC_CONSTRAINTS, b"\x30\x03\x01\x01")
    with pytest.raises(CertificateUntrusted, match="malformed"):
        extract_identity(garbage)
    with pytest.raises(CertificateUntrusted, match="malformed"):
        ChainValidator([TrustAnchor(ROOT, OFF)]).validate(garbage, at=AT)


def test_a_forged_signature_over_the_quirky_leaf_is_refused():
    # The lenient reading is of extensions only: signatures are over the bytes as received.
    der = bytearray(LEAF.public_bytes(Encoding.DER))
    der[-5] ^= 0x01
    forged = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(CertificateUntrusted):
        ChainValidator([TrustAnchor(ROOT, OFF)]).validate(forged, at=AT)


def test_non_critical_basic_constraints_root_is_an_anchor():
    constraints, critical = basic_constraints(ROOT)
    assert constraints.ca and not critical
    plain = _leaf(ENTERPRISE_SUBJECT, explicit_default=False)
    assert ChainValidator([TrustAnchor(ROOT, OFF)]).validate(plain, at=AT)


# --- real public roots --------------------------------------------------------------------


def test_the_real_roots_are_there():
    assert len(REAL_ROOTS) >= 6


@pytest.mark.parametrize("path", REAL_ROOTS, ids=lambda p: p.stem)
def test_real_root_parses_and_reads(path):
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    constraints = basic_constraints(certificate)
    assert constraints is not None and constraints[0].ca
    assert certificate.subject == certificate.issuer  # a root, no holder's data
    identity = extract_identity(certificate)
    country = certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    assert [a.value for a in country] == ["CN"]
    assert identity.common_name and identity.common_name in identity.subject_dn_display
    assert identity.unified_social_credit_code is None and identity.id_card_number is None


@pytest.mark.parametrize("path", REAL_ROOTS, ids=lambda p: p.stem)
def test_real_root_is_accepted_as_a_trust_anchor(path):
    root = x509.load_pem_x509_certificate(path.read_bytes())
    at = root.not_valid_before_utc + timedelta(days=1)
    # The root validates as the anchor of itself (a path of one): its profile and validity.
    validator = ChainValidator([TrustAnchor(root, OFF)])
    with pytest.raises(CertificateUntrusted, match="no path"):
        validator.validate(LEAF, at=at)  # and it vouches for nothing it did not sign


# --- SM2 ----------------------------------------------------------------------------------


def _openssl(*arguments: str | Path) -> None:
    subprocess.run(["openssl", *map(str, arguments)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def sm2_chain(tmp_path_factory):
    """An SM2 root and an SM2 enterprise leaf with the USCC in serialNumber, made by OpenSSL."""
    d = tmp_path_factory.mktemp("sm2")
    distid = "distid:1234567812345678"
    for name in ("root", "leaf"):
        _openssl(
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:SM2",
            "-out",
            d / f"{name}.key",
        )
    _openssl(
        "req",
        "-new",
        "-x509",
        "-key",
        d / "root.key",
        "-sm3",
        "-sigopt",
        distid,
        "-subj",
        "/C=CN/O=SM2 Test CA/CN=SM2 Test Root",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        d / "root.pem",
    )
    _openssl(
        "req",
        "-new",
        "-key",
        d / "leaf.key",
        "-sm3",
        "-sigopt",
        distid,
        "-subj",
        f"/C=CN/O=Example/CN=Example/serialNumber={USCC}",
        "-out",
        d / "leaf.csr",
    )
    (d / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        d / "leaf.csr",
        "-CA",
        d / "root.pem",
        "-CAkey",
        d / "root.key",
        "-CAcreateserial",
        "-sm3",
        "-sigopt",
        distid,
        "-vfyopt",
        distid,
        "-days",
        "365",
        "-extfile",
        d / "leaf.ext",
        "-out",
        d / "leaf.pem",
    )
    load = x509.load_pem_x509_certificate
    return load((d / "root.pem").read_bytes()), load((d / "leaf.pem").read_bytes())


def test_sm2_certificate_identity_is_extracted(sm2_chain):
    _root, leaf = sm2_chain
    identity = extract_identity(leaf)
    assert identity.unified_social_credit_code == USCC
    assert identity.common_name == "Example"


def test_openssl_made_sm2_chain_validates_with_the_default_signer_id(sm2_chain):
    root, leaf = sm2_chain
    at = leaf.not_valid_before_utc + timedelta(hours=1)
    chain = ChainValidator([TrustAnchor(root, OFF)]).validate(leaf, at=at)
    assert [c.subject for c in chain.certificates] == [leaf.subject, root.subject]


def test_openssl_made_sm2_chain_fails_under_another_signer_id(sm2_chain):
    root, leaf = sm2_chain
    at = leaf.not_valid_before_utc + timedelta(hours=1)
    other = OFF.replace(sm2_signer_id=b"ALICE123@YAHOO.COM")
    with pytest.raises(CertificateUntrusted, match="no path"):
        ChainValidator([TrustAnchor(root, other)]).validate(leaf, at=at)
