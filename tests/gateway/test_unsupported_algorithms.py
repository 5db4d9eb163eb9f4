"""Certificates with algorithms the engine refuses (DSA): a clear code and a message naming the
algorithm, in `certgate cert verify` (JSON and plain) and in the login API — never a traceback.
SM2-with-SM3 chains made by OpenSSL, which the engine verifies, go through the same routes like
any other chain.

The certificates are made by ``openssl`` at test time: an SM2 root and an SM2 leaf it signed
(SM2-with-SM3, signer ID 1234567812345678), and an RSA root that signed an SM2 leaf and a DSA leaf.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Flask

from gateway.clock import FixedClock
from tests.gateway.conftest import ORIGIN, post_json

CERTGATE = str(Path(sys.executable).with_name("certgate"))
SM2_ID = "distid:1234567812345678"
AT = "2030-01-01T00:00:00Z"  # inside every certificate's validity below
LEAF_EXTENSIONS = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""
CA_OPTIONS = (
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
)  # fmt: skip


@dataclass(frozen=True)
class Pki:
    sm2_root: Path
    sm2_leaf: Path
    rsa_root: Path
    rsa_sm2_leaf: Path
    rsa_dsa_leaf: Path


def openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("sm2")
    (d / "leaf.ext").write_text(LEAF_EXTENSIONS)
    days = ("-days", "7300")
    openssl(d, "genpkey", "-algorithm", "SM2", "-out", "sm2root.key")
    openssl(d, "req", "-x509", "-new", "-key", "sm2root.key", "-sm3", "-sigopt", SM2_ID,
            "-subj", "/C=CN/O=CertGate Test/CN=SM2 Root", *days, *CA_OPTIONS,
            "-out", "sm2root.pem")  # fmt: skip
    openssl(d, "genpkey", "-algorithm", "SM2", "-out", "leaf.key")
    openssl(d, "req", "-new", "-key", "leaf.key", "-sm3", "-sigopt", SM2_ID,
            "-subj", "/C=CN/O=CertGate Test/CN=SM2 Leaf", "-out", "leaf.csr")  # fmt: skip
    openssl(d, "x509", "-req", "-in", "leaf.csr", "-CA", "sm2root.pem", "-CAkey", "sm2root.key",
            "-sm3", "-sigopt", SM2_ID, "-vfyopt", SM2_ID, *days, "-extfile", "leaf.ext",
            "-set_serial", "1001", "-out", "sm2leaf.pem")  # fmt: skip
    openssl(d, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", "rsaroot.key")  # fmt: skip
    openssl(d, "req", "-x509", "-new", "-key", "rsaroot.key", "-sha256",
            "-subj", "/C=CN/O=CertGate Test/CN=RSA Root", *days, *CA_OPTIONS,
            "-out", "rsaroot.pem")  # fmt: skip
    openssl(d, "x509", "-req", "-in", "leaf.csr", "-CA", "rsaroot.pem", "-CAkey", "rsaroot.key",
            "-sha256", "-vfyopt", SM2_ID, *days, "-extfile", "leaf.ext", "-set_serial", "1002",
            "-out", "rsa_sm2leaf.pem")  # fmt: skip
    openssl(d, "genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt",
            "dsa_paramgen_bits:2048", "-out", "dsa.param")  # fmt: skip
    openssl(d, "genpkey", "-paramfile", "dsa.param", "-out", "dsa.key")
    openssl(d, "req", "-new", "-key", "dsa.key", "-sha256",
            "-subj", "/C=CN/O=CertGate Test/CN=DSA Leaf", "-out", "dsa.csr")  # fmt: skip
    openssl(d, "x509", "-req", "-in", "dsa.csr", "-CA", "rsaroot.pem", "-CAkey", "rsaroot.key",
            "-sha256", *days, "-extfile", "leaf.ext", "-set_serial", "1003",
            "-out", "rsa_dsaleaf.pem")  # fmt: skip
    return Pki(
        d / "sm2root.pem", d / "sm2leaf.pem", d / "rsaroot.pem", d / "rsa_sm2leaf.pem",
        d / "rsa_dsaleaf.pem",
    )  # fmt: skip


def verify(leaf: Path, root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERTGATE, "cert", "verify", str(leaf), "--trust", str(root), "--at", AT,
         "--revocation", "off", *options],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


# --- certgate cert verify -------------------------------------------------------------------------


@pytest.mark.parametrize(("leaf", "root", "algorithm"), [("rsa_dsa_leaf", "rsa_root", "DSA")])
def test_cert_verify_json_names_the_algorithm(
    pki: Pki, leaf: str, root: str, algorithm: str
) -> None:
    for language, wording in (("en", f"its algorithm {algorithm} is not supported"),
                              ("zh-CN", f"暂不支持证书所用的算法 {algorithm}")):  # fmt: skip
        done = verify(getattr(pki, leaf), getattr(pki, root), "--json", "--lang", language)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 1
        document = json.loads(done.stdout)
        assert document["ok"] is False
        assert document["code"] == "certificate_untrusted"
        assert wording in document["message"]


def test_cert_verify_plain_names_the_algorithm(pki: Pki) -> None:
    done = verify(pki.rsa_dsa_leaf, pki.rsa_root, "--lang", "en")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        "certificate_untrusted: The certificate is not trusted: its algorithm DSA is not "
        "supported (use an RSA or ECDSA certificate)."
    )


@pytest.mark.parametrize(
    ("leaf", "root", "chain"),
    [
        (
            "sm2_leaf",
            "sm2_root",
            ["CN=SM2 Leaf,O=CertGate Test,C=CN", "CN=SM2 Root,O=CertGate Test,C=CN"],
        ),
        (
            "rsa_sm2_leaf",
            "rsa_root",
            ["CN=SM2 Leaf,O=CertGate Test,C=CN", "CN=RSA Root,O=CertGate Test,C=CN"],
        ),
    ],
)
def test_cert_verify_prints_sm2_chains_like_any_other(
    pki: Pki, leaf: str, root: str, chain: list[str]
) -> None:
    done = verify(getattr(pki, leaf), getattr(pki, root), "--json", "--lang", "en")
    assert "Traceback" not in done.stderr, done.stderr
    document = json.loads(done.stdout)
    assert done.returncode == 0, document
    assert document["ok"] is True and document["chain"] == chain
    assert document["warnings"] == []
    plain = verify(getattr(pki, leaf), getattr(pki, root), "--lang", "en")
    assert plain.returncode == 0 and "SM2 Leaf" in plain.stdout


# --- the login API --------------------------------------------------------------------------------


def _app(make_app: Any, root: Path) -> Flask:
    # openssl issues from now on: the gateway's clock is set inside the certificates' validity.
    clock = FixedClock(datetime.fromisoformat(AT))
    return make_app(TRUST_ANCHORS=[_anchor(root)], CLOCK=clock)  # type: ignore[no-any-return]


def _anchor(root: Path) -> dict[str, Any]:
    return {"name": root.stem, "certificate": str(root), "revocation": "off"}


def _tls_login(app: Flask, leaf: Path, language: str) -> Any:
    pem = leaf.read_text()
    return app.test_client().post(
        "/api/v1/login/tls",
        json={},
        headers={
            "Origin": ORIGIN,
            "X-SSL-Client-Cert": quote(pem, safe=""),
            "Accept-Language": language,
        },
        environ_base={"REMOTE_ADDR": "10.0.0.5"},
    )


@pytest.mark.parametrize(("leaf", "root", "algorithm"), [("rsa_dsa_leaf", "rsa_root", "DSA")])
def test_tls_login_answers_certificate_untrusted_naming_the_algorithm(
    make_app: Any, pki: Pki, leaf: str, root: str, algorithm: str
) -> None:
    app = _app(make_app, getattr(pki, root))
    for language, wording in (("en", f"its algorithm {algorithm} is not supported"),
                              ("zh-CN", f"暂不支持证书所用的算法 {algorithm}")):  # fmt: skip
        response = _tls_login(app, getattr(pki, leaf), language)
        assert response.status_code == 401, response.json
        assert response.json["ok"] is False
        assert response.json["error"] == "certificate_untrusted"
        assert wording in response.json["message"]


def test_tls_login_with_an_sm2_chain_reaches_account_mapping(make_app: Any, pki: Pki) -> None:
    response = _tls_login(_app(make_app, pki.sm2_root), pki.sm2_leaf, "en")
    assert response.status_code == 401 and response.json["error"] == "account_not_found"


@pytest.mark.parametrize("claimed", ["ecdsa-sha256", "sm2-sm3"])
def test_token_login_with_an_sm2_key_and_a_bad_signature_is_signature_invalid(
    make_app: Any, pki: Pki, claimed: str
) -> None:
    app = _app(make_app, pki.rsa_root)
    client = app.test_client()
    challenge = post_json(client, "/api/v1/login/challenge", None).json
    certificate = x509.load_pem_x509_certificate(pki.rsa_sm2_leaf.read_bytes())
    response = post_json(
        client,
        "/api/v1/login/token",
        {
            "challenge_id": challenge["challenge_id"],
            "certificate": base64.b64encode(certificate.public_bytes(Encoding.DER)).decode(),
            "signature": base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(),
            "signature_algorithm": claimed,
        },
        **{"Accept-Language": "en"},
    )
    assert response.status_code == 401, response.json
    assert response.json["error"] == "signature_invalid"
