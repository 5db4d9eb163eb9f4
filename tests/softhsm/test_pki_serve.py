"""Serving the test PKI: CRLs over real HTTP, real ``openssl ocsp`` responders asked by the real
``openssl ocsp`` client, and `certgate pki serve` as a process stopped with SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from softhsm.pki import CA_NAMES, TestPki
from softhsm.pki_files import serial_hex
from softhsm.pki_server import ResponderFailed, RunningPki, query_ocsp
from tests.fixtures_pki import PKI_EPOCH, create_test_pki, free_port, free_port_block

ID_NUMBER = "11010519491231002X"
CERTGATE = Path(sys.executable).with_name("certgate")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return bytes(answer.read())


def openssl_ocsp_status(pki: TestPki, certificate_path: Path, ca: str) -> str:
    """Status line of the real OpenSSL OCSP client, after it verified the response."""
    result = subprocess.run(
        [
            "openssl", "ocsp",
            "-issuer", str(pki.ca_certificate_path(ca)),
            "-cert", str(certificate_path),
            "-url", pki.ocsp_url(ca),
            "-CAfile", str(pki.ca_certificate_path("root")),
            "-timeout", "10",
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr
    return result.stdout.splitlines()[0].split(": ", 1)[1] + "".join(
        line.strip() + ";" for line in result.stdout.splitlines()[1:] if "Reason" in line
    )


def test_crl_is_served_fresh_on_every_request(running_pki: RunningPki, test_pki: TestPki) -> None:
    assert fetch(running_pki.crl_url("rsa")) == test_pki.crl_path("rsa").read_bytes()
    issued = test_pki.issue("person", "撤销者", id_number=ID_NUMBER, at=PKI_EPOCH)
    # Revoked on the PKI's own clock: a CRL published "now" would be from the future for every
    # later test that validates at the session's fixed moment (the PKI is shared).
    test_pki.revoke(issued.serial, reason="superseded", at=PKI_EPOCH + timedelta(hours=1))
    crl = x509.load_der_x509_crl(fetch(running_pki.crl_url("rsa")))
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    assert crl.is_signature_valid(test_pki.intermediate_certificate("rsa").public_key())


def test_ca_certificates_are_served_and_other_paths_are_not(
    running_pki: RunningPki, test_pki: TestPki
) -> None:
    root_der = test_pki.root_certificate.public_bytes(serialization.Encoding.DER)
    assert fetch(test_pki.ca_issuers_url("root")) == root_der
    assert fetch(running_pki.crl_url("p256") + ".pem").startswith(b"-----BEGIN X509 CRL")
    with pytest.raises(urllib.error.HTTPError) as refused:
        fetch(f"http://127.0.0.1:{test_pki.crl_port}/../pki.json")
    refused.value.close()
    assert refused.value.code == 404


@pytest.mark.parametrize(("ca", "key"), [("rsa", "rsa2048"), ("p256", "p256")])
def test_openssl_ocsp_says_good_then_revoked(
    running_pki: RunningPki, test_pki: TestPki, ca: str, key: str
) -> None:
    issued = test_pki.issue("person", "在线查询", id_number=ID_NUMBER, ca=ca, key=key)  # type: ignore[arg-type]
    assert openssl_ocsp_status(test_pki, issued.cert_path, ca) == "good"
    test_pki.revoke(issued.serial, reason="key_compromise", at=PKI_EPOCH + timedelta(hours=1))
    assert (
        openssl_ocsp_status(test_pki, issued.cert_path, ca) == "revoked" + "Reason: keyCompromise;"
    )


def test_root_responder_answers_for_the_intermediates(
    running_pki: RunningPki, test_pki: TestPki
) -> None:
    for ca in ("rsa", "p256"):
        intermediate_path = test_pki.ca_certificate_path(ca)
        assert openssl_ocsp_status(test_pki, intermediate_path, "root") == "good"


def test_responder_says_unknown_for_a_serial_it_never_issued(
    running_pki: RunningPki, test_pki: TestPki
) -> None:
    result = subprocess.run(
        [
            "openssl", "ocsp",
            "-issuer", str(test_pki.ca_certificate_path("rsa")),
            "-serial", "0x1234",
            "-url", test_pki.ocsp_url("rsa"),
            "-CAfile", str(test_pki.ca_certificate_path("root")),
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    assert result.stdout.startswith("0x1234: unknown")


def test_ocsp_response_is_signed_by_the_delegated_signer(
    running_pki: RunningPki, test_pki: TestPki
) -> None:
    issued = test_pki.issue("enterprise", "签名者公司", uscc="91440300MA5H8REU3K", ca="p256")
    response = query_ocsp(test_pki, issued.serial)
    signer = x509.load_pem_x509_certificate(test_pki.ocsp_signer_paths("p256")[0].read_bytes())
    assert response.certificates[0] == signer
    assert response.serial_number == issued.serial


def test_serve_refuses_a_busy_crl_port(tmp_path: Path) -> None:
    pki = create_test_pki(tmp_path / "pki")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", pki.crl_port))
        squatter.listen()
        with pytest.raises(ResponderFailed, match=f"cannot serve CRLs on 127.0.0.1:{pki.crl_port}"):
            with pki.serve():
                pass
    with pki.serve() as running:  # the responders of the failed start were stopped
        assert fetch(running.crl_url("root")) == pki.crl_path("root").read_bytes()


def test_serve_reports_a_responder_that_cannot_start(tmp_path: Path) -> None:
    pki = create_test_pki(tmp_path / "pki")
    with socket.socket() as squatter:
        squatter.bind(("", pki.ocsp_port_of("p256")))
        squatter.listen()
        with pytest.raises(ResponderFailed, match="openssl ocsp for CA p256 .* exited"):
            with pki.serve():
                pass


# --- `certgate pki` as real processes ------------------------------------------------------------


def run_certgate(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CERTGATE), "pki", *map(str, arguments)], capture_output=True, text=True, check=False
    )


def child_pids(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children |= {int(c) for c in (task / "children").read_text().split()}
    return children


def is_running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_certgate_pki_processes_end_to_end(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    crl_port, ocsp_port = free_port(), free_port_block(4)
    created = run_certgate("init", directory, "--crl-port", crl_port, "--ocsp-port", ocsp_port)
    assert created.returncode == 0, created.stderr
    issued = run_certgate(
        "issue", directory, "--kind", "enterprise", "--name", "进程测试公司",
        "--uscc", "91110000600037341L",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    serial = int(issued.stdout.split("(", 1)[1].split(")", 1)[0])
    pki = TestPki.open(directory)
    leaf_path = directory / "issued" / f"{serial_hex(serial)}.pem"

    server = subprocess.Popen(
        [str(CERTGATE), "pki", "serve", str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = []
        for line in server.stdout:  # type: ignore[union-attr]
            banner.append(line)
            if "press Ctrl-C" in line:
                break
        assert any(pki.ocsp_url("rsa") in line for line in banner), banner
        openssl_children = child_pids(server.pid)
        assert len(openssl_children) == len(CA_NAMES)  # one responder per CA, SM2 included

        assert openssl_ocsp_status(pki, leaf_path, "rsa") == "good"
        revoked = run_certgate("revoke", directory, serial_hex(serial), "--reason", "superseded")
        assert revoked.returncode == 0, revoked.stderr
        assert openssl_ocsp_status(pki, leaf_path, "rsa") == "revokedReason: superseded;"
        crl = x509.load_der_x509_crl(fetch(pki.crl_url("rsa")))
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None

        server.send_signal(signal.SIGINT)
        stdout, stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, stderr
    assert "Stopped." in stdout
    assert not any(is_running(pid) for pid in openssl_children)
    with pytest.raises(urllib.error.URLError):
        fetch(pki.crl_url("rsa"))


def test_certgate_pki_serve_stops_on_sigterm(tmp_path: Path) -> None:
    pki = create_test_pki(tmp_path / "pki")
    server = subprocess.Popen(
        [str(CERTGATE), "pki", "serve", str(pki.directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in server.stdout:  # type: ignore[union-attr]
            if "press Ctrl-C" in line:
                break
        openssl_children = child_pids(server.pid)
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0
    assert openssl_children and not any(is_running(pid) for pid in openssl_children)
    assert os.path.exists(pki.directory / "logs" / "ocsp-rsa.log")


def wait_until_gone(pids: set[int]) -> set[int]:
    """The pids still running after a bounded wait (the kernel signals them asynchronously)."""
    for _ in range(200):
        running = {pid for pid in pids if is_running(pid)}
        if not running:
            return running
        time.sleep(0.05)
    return running


def test_a_killed_serve_leaves_no_responder_behind(tmp_path: Path) -> None:
    pki = create_test_pki(tmp_path / "pki")
    server = subprocess.Popen(
        [str(CERTGATE), "pki", "serve", str(pki.directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in server.stdout:  # type: ignore[union-attr]
            if "press Ctrl-C" in line:
                break
        openssl_children = child_pids(server.pid)
    finally:
        server.kill()
        server.communicate()
    assert len(openssl_children) == len(CA_NAMES)
    assert wait_until_gone(openssl_children) == set()
