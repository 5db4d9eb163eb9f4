"""SM2-with-SM3 chains, CRLs and OCSP responses: the engine against the test PKI's SM2 CA (an SM2
key under the RSA root: a mixed chain), each artefact cross-checked with OpenSSL and its
``distid:1234567812345678``; negative cases (x509-limbo style) each end in its error code.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import crl as asn1_crl
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import sm2
from certs.errors import CertError
from certs.fetch import HttpFetcher
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlStore
from certs.revocation.ocsp import OcspClient
from certs.revocation.status import RevocationState
from certs.validation import ChainValidator
from softhsm.pki import IssuedCertificate, TestPki
from softhsm.pki_server import RunningPki
from softhsm.pki_sm2 import sign_certificate
from tests.fixtures_pki import free_port_block

DISTID = "distid:1234567812345678"
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
AT = START + timedelta(hours=1)
ZHANG_SAN = "11010519491231002X"
LI_SI = "360426199101010071"
HARD = ValidationPolicy(revocation=RevocationMode.HARD_FAIL, use_ocsp=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    directory = Path(tmp_path_factory.mktemp("sm2-pki"))
    port = free_port_block(8)
    return TestPki.create(directory, crl_port=port, ocsp_port=port + 1, at=START)


@pytest.fixture(scope="module")
def leaf(pki: TestPki) -> IssuedCertificate:
    return pki.issue(
        "person", "张三", id_number="11010519491231002X", key="sm2", ca="sm2", at=START
    )


def _pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(PEM) for c in certificates))
    return path


def _validator(pki: TestPki, policy: ValidationPolicy = HARD) -> ChainValidator:
    crls = CrlStore()
    crls.add(pki.crl_path("sm2").read_bytes(), source="sm2.crl")
    crls.add(pki.crl_path("root").read_bytes(), source="root.crl")
    checker = RevocationChecker(crls=crls)
    return ChainValidator([TrustAnchor(pki.root_certificate, policy)], revocation=checker)


def _openssl_verify(tmp_path: Path, root: x509.Certificate, *chain: x509.Certificate) -> str:
    leaf, *intermediates = chain
    arguments = ["openssl", "verify", "-vfyopt", DISTID, "-attime", str(int(AT.timestamp()))]
    arguments += ["-CAfile", str(_pem(tmp_path / "root.pem", root))]
    if intermediates:
        arguments += ["-untrusted", str(_pem(tmp_path / "chain.pem", *intermediates))]
    arguments.append(str(_pem(tmp_path / "leaf.pem", leaf)))
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr


def test_sm2_leaf_validates_through_the_mixed_chain_and_openssl_agrees(
    pki: TestPki, leaf: IssuedCertificate, tmp_path: Path
) -> None:
    assert leaf.certificate.signature_algorithm_oid.dotted_string == sm2.SM2_WITH_SM3_OID
    chain = _validator(pki).validate(leaf.certificate, [pki.intermediate_certificate("sm2")], at=AT)
    assert chain.certificates[-1] == pki.root_certificate
    assert [s.state for s in chain.revocation] == [RevocationState.GOOD] * 2
    verdict = _openssl_verify(tmp_path, pki.root_certificate, leaf.certificate, *leaf.chain[:-1])
    assert verdict.strip().endswith(": OK"), verdict


def test_sm2_crl_signature_verifies_with_openssl_and_the_standard_id(
    pki: TestPki, tmp_path: Path
) -> None:
    """``openssl verify -crl_check`` checks CRL signatures with an empty ID whatever -vfyopt says,
    so the CRL's signature is checked with ``openssl dgst`` over its TBS."""
    der = pki.crl_path("sm2").read_bytes()
    parsed = asn1_crl.CertificateList.load(der)
    (tmp_path / "tbs.der").write_bytes(parsed["tbs_cert_list"].dump())
    (tmp_path / "sig.der").write_bytes(parsed["signature"].native)
    _pem(tmp_path / "ca.pem", pki.intermediate_certificate("sm2"))
    subprocess.run(
        ["openssl", "x509", "-in", "ca.pem", "-pubkey", "-noout", "-out", "pub.pem"],
        cwd=tmp_path, check=True, timeout=30,
    )  # fmt: skip

    def dgst(distid: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "dgst", "-sm3", "-verify", "pub.pem", "-sigopt", distid,
             "-signature", "sig.der", "tbs.der"],
            cwd=tmp_path, capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    assert dgst(DISTID).stdout.strip() == "Verified OK"
    assert dgst("distid:ALICE123@YAHOO.COM").returncode != 0


def _error_code(pki: TestPki, certificate: x509.Certificate, **options: object) -> str:
    policy = options.pop("policy", HARD)
    assert isinstance(policy, ValidationPolicy)
    intermediates = options.pop("intermediates", [pki.intermediate_certificate("sm2")])
    assert isinstance(intermediates, list)
    try:
        _validator(pki, policy).validate(certificate, intermediates, at=AT)
    except CertError as error:
        return error.code
    return "valid"


def _tampered_signature(certificate: x509.Certificate) -> x509.Certificate:
    der = bytearray(certificate.public_bytes(DER))
    der[-5] ^= 0x01  # inside s of the SEQUENCE {r, s}
    return x509.load_der_x509_certificate(bytes(der))


@pytest.fixture(scope="module")
def revoked(pki: TestPki) -> IssuedCertificate:
    issued = pki.issue(
        "person", "李四", id_number="360426199101010071", key="sm2", ca="sm2", at=START
    )
    pki.revoke(issued.serial, reason="key_compromise", at=START + timedelta(minutes=5))
    return issued


def test_bad_sm2_signature_is_untrusted(pki: TestPki, leaf: IssuedCertificate) -> None:
    assert _error_code(pki, _tampered_signature(leaf.certificate)) == "certificate_untrusted"


def test_wrong_signer_id_is_untrusted(pki: TestPki, leaf: IssuedCertificate) -> None:
    other = HARD.replace(sm2_signer_id=b"ALICE123@YAHOO.COM")
    assert _error_code(pki, leaf.certificate, policy=other) == "certificate_untrusted"
    assert _error_code(pki, leaf.certificate) == "valid"


def test_sm2_signature_from_a_key_on_another_curve_is_untrusted(pki: TestPki) -> None:
    p256 = pki.authority("p256").certificate
    sm2_leaf = pki.issue(
        "person", "王五", id_number="11010519491231002X", key="sm2", ca="sm2", at=START
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(sm2_leaf.certificate.subject)
        .issuer_name(p256.subject)
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(START + timedelta(days=30))
    )
    for extension in sm2_leaf.certificate.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    assert isinstance(sm2_leaf.private_key, sm2.Sm2PrivateKey)
    forged = sign_certificate(
        builder, sm2_leaf.private_key.public_key(), sm2.Sm2PrivateKey.generate()
    )
    assert forged.signature_algorithm_oid.dotted_string == sm2.SM2_WITH_SM3_OID
    code = _error_code(pki, forged, intermediates=[p256, pki.intermediate_certificate("sm2")])
    assert code == "certificate_untrusted"


def test_revoked_by_the_sm2_crl(pki: TestPki, revoked: IssuedCertificate) -> None:
    assert pki.crl("sm2").signature_algorithm_oid.dotted_string == sm2.SM2_WITH_SM3_OID
    assert _error_code(pki, revoked.certificate) == "certificate_revoked"


def test_sm2_crl_signature_depends_on_the_signer_id(pki: TestPki) -> None:
    indexed = CrlStore().add(pki.crl_path("sm2").read_bytes(), source="sm2.crl")[0]
    sm2_ca = pki.intermediate_certificate("sm2")
    assert indexed.signed_by(sm2_ca)
    assert not indexed.signed_by(sm2_ca, b"ALICE123@YAHOO.COM")
    assert not indexed.signed_by(pki.intermediate_certificate("p256"))


@pytest.fixture(scope="module")
def served(pki: TestPki) -> Iterator[RunningPki]:
    with pki.serve() as running:
        yield running


@pytest.mark.parametrize(
    ("which", "expected"), [("leaf", "valid"), ("revoked", "certificate_revoked")]
)
def test_sm2_ocsp_responder_answers_sm2_signed(
    pki: TestPki,
    served: RunningPki,
    leaf: IssuedCertificate,
    revoked: IssuedCertificate,
    which: str,
    expected: str,
) -> None:
    certificate = {"leaf": leaf, "revoked": revoked}[which].certificate
    now = datetime.now(UTC)
    client = OcspClient(HttpFetcher(max_bytes=64 * 1024), timeout=5.0)
    status = client.status(certificate, pki.intermediate_certificate("sm2"), at=now)
    assert status.state in (RevocationState.GOOD, RevocationState.REVOKED), status.detail
    policy = ValidationPolicy(revocation=RevocationMode.HARD_FAIL, use_distribution_points=False)
    checker = RevocationChecker(ocsp=client)
    validator = ChainValidator([TrustAnchor(pki.root_certificate, policy)], revocation=checker)
    try:
        validator.validate(certificate, [pki.intermediate_certificate("sm2")], at=now)
        code = "valid"
    except CertError as error:
        code = error.code
    # The intermediate's own status comes from the root's responder (RSA) the same way.
    assert code == expected
    # Under another signer ID the responder's SM2 signature does not verify.
    fresh = OcspClient(HttpFetcher(max_bytes=64 * 1024), timeout=5.0)
    wrong = fresh.status(
        certificate, pki.intermediate_certificate("sm2"), at=now, sm2_signer_id=b"other"
    )
    assert wrong.state is RevocationState.UNAVAILABLE
    assert "not issued by the certificate's issuer" in wrong.detail
