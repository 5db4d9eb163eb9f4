"""`certgate cert verify` end to end: the test PKI's certificates through the real engine.

Skipped until ``certs.validation.ChainValidator`` exists; the revocation cases also wait for
``certs.revocation.checker.RevocationChecker``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.cli import main
from tests.certs.test_identity import CA_CERTIFICATE
from tests.fixtures_pki import PKI_EPOCH, PKI_VALIDATION_TIME

validation = pytest.importorskip("certs.validation", reason="certs.validation has not landed")
if not hasattr(validation, "ChainValidator"):
    pytest.skip("certs.validation.ChainValidator has not landed", allow_module_level=True)

AT = PKI_VALIDATION_TIME.isoformat()
SERIAL_NAMES = count(1)


@pytest.fixture
def revocation_layer():
    checker = pytest.importorskip(
        "certs.revocation.checker", reason="certs.revocation.checker has not landed"
    )
    if not hasattr(checker, "RevocationChecker"):
        pytest.skip("certs.revocation.checker.RevocationChecker has not landed")


@pytest.fixture
def person(test_pki):
    return test_pki.issue(
        "person", f"张三{next(SERIAL_NAMES)}", id_number="11010519491231002X", at=PKI_EPOCH
    )


@pytest.fixture
def root_path(test_pki):
    return str(test_pki.ca_certificate_path("root"))


@pytest.fixture
def intermediate_path(test_pki, tmp_path):
    path = tmp_path / "intermediate.pem"
    path.write_bytes(test_pki.intermediate_certificate("rsa").public_bytes(Encoding.PEM))
    return str(path)


def run(*args: str):
    return CliRunner().invoke(main, ["cert", "verify", *map(str, args)])


def verify_json(*args: str):
    result = run(*args, "--json")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def test_a_valid_person_certificate(person, root_path, intermediate_path):
    exit_code, document = verify_json(
        person.cert_path, "--chain", intermediate_path, "--trust", root_path,
        "--revocation", "off", "--at", AT,
    )  # fmt: skip
    assert exit_code == 0, document
    assert document["ok"] is True
    assert document["message"] == "证书有效。"
    assert len(document["chain"]) == 3
    assert document["identity"]["id_card_number"] == "11010519491231002X"
    assert document["identity"]["serial"] == format(person.serial, "x")


def test_der_input(person, root_path, intermediate_path, tmp_path):
    der = tmp_path / "leaf.der"
    der.write_bytes(person.certificate.public_bytes(Encoding.DER))
    arguments = ["--chain", intermediate_path, "--trust", root_path, "--revocation", "off"]
    assert run(der, *arguments, "--at", AT).exit_code == 0


def test_a_cert_file_holding_the_whole_chain(person, root_path):
    result = run(person.chain_path, "--trust", root_path, "--revocation", "off", "--at", AT)
    assert result.exit_code == 0, result.output


def test_text_output_shows_message_chain_and_identity(person, root_path, intermediate_path):
    result = run(
        person.cert_path, "--chain", intermediate_path, "--trust", root_path,
        "--revocation", "off", "--at", AT, "--lang", "en",
    )  # fmt: skip
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "The certificate is valid."
    assert "ID-card number: 11010519491231002X" in result.stdout


INVALID = [
    # (scenario, extra arguments, error code, English message fragment)
    ("expired", ["--at", (PKI_EPOCH + timedelta(days=400)).isoformat()],
     "certificate_expired", "expired"),
    ("validated before the CA existed", ["--at", (PKI_EPOCH - timedelta(days=30)).isoformat()],
     "certificate_not_yet_valid", "not valid yet"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "extra", "code", "fragment"), INVALID, ids=[row[0] for row in INVALID]
)
def test_invalid_certificates_exit_1_with_the_code(
    person, root_path, intermediate_path, scenario, extra, code, fragment
):
    arguments = [person.cert_path, "--chain", intermediate_path, "--trust", root_path]
    exit_code, document = verify_json(*arguments, "--revocation", "off", *extra, "--lang", "en")
    assert (exit_code, document["code"]) == (1, code), scenario
    assert fragment in document["message"]
    assert document["ok"] is False
    assert document["identity"]["id_card_number"] == "11010519491231002X"


def test_an_unknown_trust_anchor_is_untrusted_and_messages_default_to_chinese(
    person, intermediate_path, tmp_path
):
    other_root = tmp_path / "other-root.pem"
    other_root.write_bytes(CA_CERTIFICATE.public_bytes(Encoding.PEM))
    exit_code, document = verify_json(
        person.cert_path, "--chain", intermediate_path, "--trust", other_root,
        "--revocation", "off", "--at", AT,
    )  # fmt: skip
    assert (exit_code, document["code"]) == (1, "certificate_untrusted")
    assert document["message"] == "证书不受信任：无法验证到受信任的根证书。"
    assert document["chain"] == []


def test_revoked_by_crl_file(test_pki, root_path, intermediate_path, revocation_layer):
    issued = test_pki.issue("person", "李四", id_number="360426199101010071", at=PKI_EPOCH)
    test_pki.revoke(issued.serial, reason="key_compromise", at=PKI_EPOCH + timedelta(hours=1))
    exit_code, document = verify_json(
        issued.cert_path, "--chain", intermediate_path, "--trust", root_path,
        "--crl", test_pki.crl_path("rsa"), "--crl", test_pki.crl_path("root"), "--at", AT,
    )  # fmt: skip
    assert (exit_code, document["code"]) == (1, "certificate_revoked")


def test_good_by_crl_files_offline(
    person, test_pki, root_path, intermediate_path, revocation_layer
):
    exit_code, document = verify_json(
        person.cert_path, "--chain", intermediate_path, "--trust", root_path,
        "--crl", test_pki.crl_path("rsa"), "--crl", test_pki.crl_path("root"), "--at", AT,
    )  # fmt: skip
    assert exit_code == 0, document


def test_hard_fail_without_any_status_source_is_revocation_unavailable(
    person, root_path, intermediate_path, revocation_layer
):
    # The PKI is not served: its distribution points and OCSP addresses refuse connections.
    exit_code, document = verify_json(
        person.cert_path, "--chain", intermediate_path, "--trust", root_path, "--at", AT
    )
    assert (exit_code, document["code"]) == (1, "revocation_unavailable")


def test_soft_fail_accepts_an_unavailable_status(
    person, root_path, intermediate_path, revocation_layer
):
    exit_code, document = verify_json(
        person.cert_path, "--chain", intermediate_path, "--trust", root_path,
        "--revocation", "soft-fail", "--at", AT,
    )  # fmt: skip
    assert exit_code == 0, document


def fresh_root_crl(test_pki, now: datetime, path: Path) -> Path:
    """A root CRL current at ``now``, signed here so the shared PKI's own CRLs stay as they are."""
    root = test_pki.authority("root")
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.certificate.subject)
        .last_update(now - timedelta(minutes=1))
        .next_update(now + timedelta(days=1))
        .add_extension(x509.CRLNumber(10_000), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.private_key.public_key()),
            critical=False,
        )
        .sign(root.private_key, hashes.SHA256())
    )
    path.write_bytes(crl.public_bytes(Encoding.DER))
    return path


def test_ocsp_responder_answers(
    test_pki, running_pki, root_path, intermediate_path, tmp_path, revocation_layer
):
    # `openssl ocsp` signs its answers with the real clock, so this case validates at now.
    now = datetime.now(UTC)
    issued = test_pki.issue("person", "王五", id_number="360426199101010071", at=now)
    root_crl = fresh_root_crl(test_pki, now, tmp_path / "root.crl")
    exit_code, document = verify_json(
        issued.cert_path,
        "--chain",
        intermediate_path,
        "--trust",
        root_path,
        "--ocsp",
        test_pki.ocsp_url("rsa"),
        "--crl",
        root_crl,
    )
    assert exit_code == 0, document


def test_a_required_policy_the_chain_does_not_assert_is_refused(
    person, root_path, intermediate_path
):
    common = (
        person.cert_path, "--chain", intermediate_path, "--trust", root_path,
        "--revocation", "off", "--at", AT, "--policy", "1.2.156.112559.1.1.1", "--lang", "en",
    )  # fmt: skip
    exit_code, document = verify_json(*common)
    assert exit_code == 0, document  # named but not required: RFC 5280 asks nothing more
    exit_code, document = verify_json(*common, "--require-explicit-policy")
    assert exit_code == 1
    assert document["code"] == "certificate_untrusted"
    assert "no acceptable certificate policy" in document["detail"]


def test_rsa_1024_is_refused_unless_allowed_and_then_warned(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.certs.chains import make_ca
    from tests.certs.test_key_strength import _leaf_with_key

    root = make_ca("CLI Key Root")
    ca = make_ca("CLI Key CA", issuer=root, serial=2)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    files = {"leaf.pem": _leaf_with_key(ca, weak), "ca.pem": ca.certificate}
    files["root.pem"] = root.certificate
    for file_name, certificate in files.items():
        (tmp_path / file_name).write_bytes(certificate.public_bytes(Encoding.PEM))
    common = (
        tmp_path / "leaf.pem", "--chain", tmp_path / "ca.pem", "--trust", tmp_path / "root.pem",
        "--revocation", "off", "--at", "2026-02-01T00:00Z",
    )  # fmt: skip
    exit_code, document = verify_json(*common)
    assert (exit_code, document["code"]) == (1, "certificate_untrusted")
    assert "RSA key of 1024 bits" in document["detail"]
    exit_code, document = verify_json(*common, "--minimum-rsa-bits", "1024")
    assert exit_code == 0, document
    assert document["warnings"] == [
        "weak key: RSA-1024 accepted only because this trust anchor allows it "
        "(minimum_rsa_bits = 1024)"
    ]
