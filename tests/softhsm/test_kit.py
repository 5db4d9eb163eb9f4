"""SoftHsmKit on real SoftHSM tokens: key generation, certificate objects, listing, deletion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from softhsm.kit import (
    InvalidTokenRequest,
    PinIncorrect,
    PkiRefused,
    SoftHsmKit,
    SoftHsmNotInstalled,
    TokenAmbiguous,
    TokenExists,
    TokenNotFound,
)
from softhsm.pki import TestPki
from tests.fixtures_softhsm import (
    ENTERPRISE_NAME,
    ENTERPRISE_USCC,
    PERSON_ID_CARD_NUMBER,
    PERSON_NAME,
    TOKEN_PIN,
    TOKEN_SO_PIN,
    MakeSoftHsmToken,
    SoftHsmCredential,
    unique_token_label,
)

# Reads the attributes of the certificate and key objects with python-pkcs11 in a child process,
# so this test process never loads libsofthsm2 itself.
READ_OBJECTS = """
import json, sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
module, label, pin, cert_id = sys.argv[1:5]
token = pkcs11.lib(module).get_token(token_label=label)
answer = {}
with token.open(user_pin=pin) as session:
    for name, object_class in (("certificate", ObjectClass.CERTIFICATE),
                               ("private", ObjectClass.PRIVATE_KEY),
                               ("public", ObjectClass.PUBLIC_KEY)):
        found = list(session.get_objects({Attribute.CLASS: object_class,
                                          Attribute.ID: bytes.fromhex(cert_id)}))
        assert len(found) == 1, (name, len(found))
        item = found[0]
        attributes = {"label": item[Attribute.LABEL], "token": item[Attribute.TOKEN],
                      "private": item[Attribute.PRIVATE]}
        if name == "certificate":
            attributes.update(
                certificate_type=int(item[Attribute.CERTIFICATE_TYPE]),
                value=bytes(item[Attribute.VALUE]).hex(),
                subject=bytes(item[Attribute.SUBJECT]).hex(),
                issuer=bytes(item[Attribute.ISSUER]).hex(),
                serial_number=bytes(item[Attribute.SERIAL_NUMBER]).hex())
        if name == "private":
            attributes.update(sensitive=item[Attribute.SENSITIVE],
                              extractable=item[Attribute.EXTRACTABLE],
                              sign=item[Attribute.SIGN])
        answer[name] = attributes
print(json.dumps(answer))
"""


def read_objects(credential: SoftHsmCredential) -> dict[str, dict[str, object]]:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            READ_OBJECTS,
            credential.kit.module,
            credential.token_label,
            credential.pin,
            credential.cert_id.hex(),
        ],
        env={**os.environ, **credential.kit.environ()},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout)


def der_integer(value: int) -> bytes:
    content = value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
    return bytes([0x02, len(content)]) + content


PUBLIC_KEY_CLASSES = {
    "rsa2048": rsa.RSAPublicKey,
    "p256": ec.EllipticCurvePublicKey,
    "ed25519": ed25519.Ed25519PublicKey,
}


@pytest.mark.parametrize("key", ["rsa2048", "p256", "ed25519"])
def test_issue_generates_key_on_token_and_stores_certificate(
    make_softhsm_token: MakeSoftHsmToken, test_pki: TestPki, key: str
) -> None:
    credential = make_softhsm_token(key=key)
    certificate = credential.provisioned.certificate

    public_key = certificate.public_key()
    assert isinstance(public_key, PUBLIC_KEY_CLASSES[key])
    if key == "p256":
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert isinstance(public_key.curve, ec.SECP256R1)
    assert credential.cert_id == x509.SubjectKeyIdentifier.from_public_key(public_key).digest
    certificate.verify_directly_issued_by(credential.provisioned.chain[0])
    assert list(credential.provisioned.chain) == test_pki.chain("rsa")

    objects = read_objects(credential)
    label = PERSON_NAME
    assert {entry["label"] for entry in objects.values()} == {label}
    assert objects["private"] == {
        "label": label,
        "token": True,
        "private": True,
        "sensitive": True,
        "extractable": False,
        "sign": True,
    }
    assert objects["public"]["token"] is True
    stored = objects["certificate"]
    assert stored["token"] is True
    assert stored["private"] is False
    assert stored["certificate_type"] == 0  # CKC_X_509
    assert bytes.fromhex(str(stored["value"])) == certificate.public_bytes(Encoding.DER)
    assert bytes.fromhex(str(stored["subject"])) == certificate.subject.public_bytes()
    assert bytes.fromhex(str(stored["issuer"])) == certificate.issuer.public_bytes()
    assert bytes.fromhex(str(stored["serial_number"])) == der_integer(certificate.serial_number)


def test_certificate_files_are_written_next_to_the_tokens(softhsm_token: SoftHsmCredential) -> None:
    provisioned = softhsm_token.provisioned
    assert provisioned.cert_path.parent.parent == softhsm_token.kit.certificates_directory
    on_disk = x509.load_pem_x509_certificate(provisioned.cert_path.read_bytes())
    assert on_disk == provisioned.certificate
    chain = x509.load_pem_x509_certificates(provisioned.chain_path.read_bytes())
    assert chain == list(provisioned.chain)


def test_enterprise_certificate_on_p256_ca_with_explicit_validity(
    make_softhsm_token: MakeSoftHsmToken,
) -> None:
    starts = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    credential = make_softhsm_token(
        kind="enterprise", key="p256", ca="p256", valid_days=30, not_before=starts
    )
    certificate = credential.provisioned.certificate
    assert certificate.not_valid_before_utc == starts
    assert certificate.not_valid_after_utc == starts + timedelta(days=30)
    assert ENTERPRISE_USCC in certificate.subject.rfc4514_string() or any(
        ENTERPRISE_USCC.encode() in extension.value.value
        for extension in certificate.extensions
        if isinstance(extension.value, x509.UnrecognizedExtension)
    )
    assert credential.provisioned.label == ENTERPRISE_NAME
    issuer_key = credential.provisioned.chain[0].public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)


def test_list_tokens_shows_certificates_and_keys(
    make_softhsm_token: MakeSoftHsmToken, softhsm_kit: SoftHsmKit
) -> None:
    credential = make_softhsm_token(key="p256")
    public_view = softhsm_kit.token(credential.token_label)
    assert public_view.slot_id == credential.slot_id
    assert not public_view.logged_in
    assert [item.cert_id for item in public_view.certificates] == [credential.cert_id]
    assert public_view.certificate(credential.cert_id).subject.endswith("C=CN")
    assert [(key.key_class, key.key_type) for key in public_view.keys] == [("public", "p256")]

    logged_in = softhsm_kit.token(credential.token_label, pin=TOKEN_PIN)
    assert logged_in.logged_in
    private = [key for key in logged_in.keys if key.key_class == "private"]
    assert [(key.cert_id, key.key_type, key.sensitive, key.extractable) for key in private] == [
        (credential.cert_id, "p256", True, False)
    ]
    assert credential.token_label in {token.label for token in softhsm_kit.list_tokens()}


def test_several_certificates_on_one_token(softhsm_kit: SoftHsmKit, test_pki: TestPki) -> None:
    label = unique_token_label()
    softhsm_kit.init_token(label, TOKEN_PIN, TOKEN_SO_PIN)
    person = softhsm_kit.issue(
        label=label,
        pin=TOKEN_PIN,
        pki=test_pki,
        kind="person",
        name=PERSON_NAME,
        id_number=PERSON_ID_CARD_NUMBER,
        key="ed25519",
    )
    enterprise = softhsm_kit.issue(
        label=label,
        pin=TOKEN_PIN,
        pki=test_pki,
        kind="enterprise",
        name=ENTERPRISE_NAME,
        uscc=ENTERPRISE_USCC,
        key="rsa2048",
        object_label="经办人",
    )
    token = softhsm_kit.token(label, pin=TOKEN_PIN)
    assert {item.cert_id: item.label for item in token.certificates} == {
        person.cert_id: PERSON_NAME,
        enterprise.cert_id: "经办人",
    }
    assert sorted((key.key_class, key.key_type) for key in token.keys) == [
        ("private", "ed25519"),
        ("private", "rsa2048"),
        ("public", "ed25519"),
        ("public", "rsa2048"),
    ]


def test_delete_token_removes_it_and_its_certificate_files(
    softhsm_token: SoftHsmCredential,
) -> None:
    kit = softhsm_token.kit
    kit.delete_token(softhsm_token.token_label)
    assert softhsm_token.token_label not in {token.label for token in kit.list_tokens()}
    assert not softhsm_token.provisioned.cert_path.exists()
    with pytest.raises(TokenNotFound, match="no token labelled"):
        kit.token(softhsm_token.token_label)
    with pytest.raises(TokenNotFound):
        kit.delete_token(softhsm_token.token_label)


def test_delete_token_finishes_when_another_process_holds_the_token_open(
    softhsm_token: SoftHsmCredential,
) -> None:
    # The signing agent looking for tokens opens them, and SoftHSM then (re)creates the token's
    # lock file; softhsm2-util's last step (removing the directory) fails if that happens while
    # it deletes. Recreating the lock file as fast as possible makes that race certain.
    kit = softhsm_token.kit
    directories = [d for d in kit.tokens_directory.iterdir() if d.is_dir()]
    (directory,) = [  # SoftHSM names the directory by a UUID; token.object holds the label
        d
        for d in directories
        if softhsm_token.token_label.encode() in (d / "token.object").read_bytes()
    ]
    others = [d for d in directories if d != directory]
    deleting = threading.Event()

    def keep_opening() -> None:
        while not deleting.is_set():
            try:
                (directory / "token.lock").touch()
            except OSError:
                pass  # the directory is gone

    opener = threading.Thread(target=keep_opening)
    opener.start()
    try:
        kit.delete_token(softhsm_token.token_label)
    finally:
        deleting.set()
        opener.join()
    assert softhsm_token.token_label not in {token.label for token in kit.list_tokens()}
    assert not directory.exists()
    assert not softhsm_token.provisioned.cert_path.exists()
    assert all((d / "token.object").exists() for d in others)  # other tokens are untouched


def test_kits_in_separate_directories_do_not_see_each_other(tmp_path: Path) -> None:
    first = SoftHsmKit(tmp_path / "first")
    second = SoftHsmKit(tmp_path / "second")
    first.init_token("first", TOKEN_PIN, TOKEN_SO_PIN)
    second.init_token("second", TOKEN_PIN, TOKEN_SO_PIN)
    assert [token.label for token in first.list_tokens()] == ["first"]
    assert [token.label for token in second.list_tokens()] == ["second"]
    conf = first.conf_path.read_text(encoding="utf-8")
    assert f"directories.tokendir = {first.tokens_directory}" in conf
    assert first.environ() == {"SOFTHSM2_CONF": str(first.conf_path)}


def test_refusals(softhsm_token: SoftHsmCredential, test_pki: TestPki, tmp_path: Path) -> None:
    kit = softhsm_token.kit
    identity = {"kind": "person", "name": PERSON_NAME, "id_number": PERSON_ID_CARD_NUMBER}
    with pytest.raises(TokenNotFound, match="no token labelled 'absent-token'"):
        kit.issue(label="absent-token", pin=TOKEN_PIN, pki=test_pki, **identity)
    with pytest.raises(PinIncorrect, match="wrong PIN"):
        kit.issue(label=softhsm_token.token_label, pin="999999", pki=test_pki, **identity)
    with pytest.raises(PinIncorrect):
        kit.list_tokens(label=softhsm_token.token_label, pin="999999")
    with pytest.raises(TokenExists, match="already exists"):
        kit.init_token(softhsm_token.token_label, TOKEN_PIN, TOKEN_SO_PIN)
    with pytest.raises(InvalidTokenRequest, match="longer than 32 bytes"):
        kit.init_token("标签" * 6, TOKEN_PIN, TOKEN_SO_PIN)
    with pytest.raises(InvalidTokenRequest, match="unknown key type"):
        kit.issue(
            label=softhsm_token.token_label, pin=TOKEN_PIN, pki=test_pki, key="dsa", **identity
        )
    with pytest.raises(SoftHsmNotInstalled, match="not installed"):
        SoftHsmKit(tmp_path / "nowhere", module=str(tmp_path / "missing.so")).list_tokens()


def test_refused_certificate_leaves_no_key_behind(
    softhsm_token: SoftHsmCredential, test_pki: TestPki
) -> None:
    kit = softhsm_token.kit
    with pytest.raises(PkiRefused, match="ID-card number"):
        kit.issue(
            label=softhsm_token.token_label,
            pin=TOKEN_PIN,
            pki=test_pki,
            kind="person",
            name=PERSON_NAME,
            id_number="110105194912310021",
        )
    token = kit.token(softhsm_token.token_label, pin=TOKEN_PIN)
    assert {key.cert_id for key in token.keys} == {softhsm_token.cert_id}


def test_two_tokens_with_one_label_are_refused_by_name(tmp_path: Path) -> None:
    kit = SoftHsmKit(tmp_path / "kit")
    kit.init_token("twin", TOKEN_PIN, TOKEN_SO_PIN)
    # softhsm2-util itself accepts a second token with the same label; the kit does not guess.
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "twin"]
        + ["--pin", TOKEN_PIN, "--so-pin", TOKEN_SO_PIN],
        env=kit.subprocess_environment(),
        capture_output=True,
        check=True,
    )
    serials = [token.serial for token in kit.list_tokens(label="twin")]
    assert len(serials) == 2
    with pytest.raises(TokenAmbiguous, match="several tokens are labelled 'twin'") as refused:
        kit.delete_token("twin")
    assert all(serial in refused.value.message for serial in serials)


def test_conf_file_is_rewritten_when_it_points_elsewhere(tmp_path: Path) -> None:
    kit = SoftHsmKit(tmp_path / "kit")
    kit.prepare()
    kit.conf_path.write_text("directories.tokendir = /nonexistent\n", encoding="utf-8")
    kit.init_token("moved", TOKEN_PIN, TOKEN_SO_PIN)
    assert [token.label for token in kit.list_tokens()] == ["moved"]
    assert str(kit.tokens_directory) in kit.conf_path.read_text(encoding="utf-8")
