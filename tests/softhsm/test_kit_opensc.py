"""Kit tokens work with other PKCS#11 tools: OpenSC's pkcs11-tool signs, OpenSSL verifies."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fixtures_softhsm import MakeSoftHsmToken, SoftHsmCredential

PKCS11_TOOL = shutil.which("pkcs11-tool")
OPENSSL = shutil.which("openssl")

pytestmark = [
    pytest.mark.skipif(PKCS11_TOOL is None, reason="OpenSC pkcs11-tool is not installed"),
    pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed"),
]

MESSAGE = b"certgate-login-v1\nhttps://gateway.example\nchallenge-1\nnonce\n"


def pkcs11_tool(credential: SoftHsmCredential, *arguments: str) -> str:
    """Run pkcs11-tool on the credential's token, selected by slot (labels match by prefix)."""
    assert PKCS11_TOOL is not None
    completed = subprocess.run(
        [
            PKCS11_TOOL,
            "--module",
            credential.kit.module,
            "--slot",
            str(credential.slot_id),
            *arguments,
        ],
        env={**os.environ, **credential.kit.environ()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def object_blocks(listing: str) -> list[tuple[str, dict[str, str]]]:
    """``pkcs11-tool --list-objects`` output as (heading, {field: value}) per object."""
    blocks: list[tuple[str, dict[str, str]]] = []
    for line in listing.splitlines():
        if line and not line[0].isspace():
            blocks.append((line.strip(), {}))
        elif blocks and ":" in line:
            name, _, value = line.strip().partition(":")
            blocks[-1][1][name.strip()] = value.strip()
    return blocks


def sign_on_token(
    credential: SoftHsmCredential, mechanism: str, data: bytes, folder: Path, *extra: str
) -> bytes:
    data_path = folder / "data"
    signature_path = folder / "signature"
    data_path.write_bytes(data)
    pkcs11_tool(
        credential,
        "--login",
        "--pin",
        credential.pin,
        "--sign",
        "--mechanism",
        mechanism,
        "--id",
        credential.cert_id.hex(),
        "--input-file",
        str(data_path),
        "--output-file",
        str(signature_path),
        *extra,
    )
    return signature_path.read_bytes()


def openssl_verify(
    credential: SoftHsmCredential, signature: bytes, folder: Path, *command: str
) -> str:
    assert OPENSSL is not None
    public_key_path = folder / "public.pem"
    public_key_path.write_bytes(
        credential.provisioned.certificate.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )
    )
    (folder / "message").write_bytes(MESSAGE)
    (folder / "message.sig").write_bytes(signature)
    completed = subprocess.run(
        [OPENSSL, *command],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


@pytest.mark.parametrize("key", ["rsa2048", "p256", "ed25519"])
def test_list_objects_shows_certificate_and_private_key_with_the_same_id(
    make_softhsm_token: MakeSoftHsmToken, key: str
) -> None:
    credential = make_softhsm_token(key=key)
    listing = pkcs11_tool(credential, "--list-objects", "--login", "--pin", credential.pin)
    ids_by_kind: dict[str, list[str]] = {}
    for heading, fields in object_blocks(listing):
        kind = heading.split(";")[0]
        ids_by_kind.setdefault(kind, []).append(fields.get("ID", ""))
        if kind == "Private Key Object":
            assert "never extractable" in fields["Access"]
            assert "sensitive" in fields["Access"]
            assert "sign" in fields["Usage"]
    cert_id = credential.cert_id.hex()
    assert ids_by_kind["Certificate Object"] == [cert_id]
    assert ids_by_kind["Private Key Object"] == [cert_id]
    assert ids_by_kind["Public Key Object"] == [cert_id]


def test_rsa_signature_from_pkcs11_tool_verifies_with_openssl(
    make_softhsm_token: MakeSoftHsmToken, tmp_path: Path
) -> None:
    credential = make_softhsm_token(key="rsa2048")
    signature = sign_on_token(credential, "SHA256-RSA-PKCS", MESSAGE, tmp_path)
    output = openssl_verify(
        credential,
        signature,
        tmp_path,
        "dgst",
        "-sha256",
        "-verify",
        "public.pem",
        "-signature",
        "message.sig",
        "message",
    )
    assert "Verified OK" in output


def test_p256_signature_from_pkcs11_tool_verifies_with_openssl(
    make_softhsm_token: MakeSoftHsmToken, tmp_path: Path
) -> None:
    credential = make_softhsm_token(key="p256")
    digest = hashlib.sha256(MESSAGE).digest()
    signature = sign_on_token(
        credential, "ECDSA", digest, tmp_path, "--signature-format", "openssl"
    )
    output = openssl_verify(
        credential,
        signature,
        tmp_path,
        "dgst",
        "-sha256",
        "-verify",
        "public.pem",
        "-signature",
        "message.sig",
        "message",
    )
    assert "Verified OK" in output


def test_ed25519_signature_from_pkcs11_tool_verifies_with_openssl(
    make_softhsm_token: MakeSoftHsmToken, tmp_path: Path
) -> None:
    credential = make_softhsm_token(key="ed25519")
    signature = sign_on_token(credential, "EDDSA", MESSAGE, tmp_path)
    assert len(signature) == 64
    output = openssl_verify(
        credential,
        signature,
        tmp_path,
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "public.pem",
        "-rawin",
        "-in",
        "message",
        "-sigfile",
        "message.sig",
    )
    assert "Signature Verified Successfully" in output
