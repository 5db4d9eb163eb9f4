"""Serving a test PKI: CRLs (and CA certificates) over HTTP, one ``openssl ocsp`` per CA.

``openssl ocsp`` (OpenSSL 3.0) reloads its index file when the file's inode, mtime or ctime
changed, but it checks *before* waiting for the next connection, so the first request after a
change would still be answered from the old index. ``notify_responder`` therefore sends one OCSP
request right after the PKI rewrites an index: the responder answers it, reloads, and every later
request sees the change. ``revoke`` and ``issue`` call it, from any process.

Also: ``openssl ocsp -port`` takes a port only and listens on every interface; the CRL server
listens on the PKI's host (127.0.0.1 by default).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from softhsm.pki import CA_NAMES, PkiError

if TYPE_CHECKING:
    from softhsm.pki import TestPki

NOTIFY_TIMEOUT_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0
OCSP_NEXT_UPDATE_MINUTES = 60
# util-linux `setpriv --pdeathsig`: a responder gets SIGTERM when the serving process dies, so a
# killed `certgate pki serve` leaves no orphaned openssl (and no preexec_fn in a threaded process).
_SETPRIV = shutil.which("setpriv")


class ResponderFailed(PkiError):
    """An ``openssl ocsp`` responder did not start or stopped answering."""


def ocsp_request_der(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """A DER OCSP request (SHA-1 certificate ID, as every responder accepts) for one certificate."""
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1()).build()
    return request.public_bytes(serialization.Encoding.DER)


def post_ocsp_request(url: str, request_der: bytes, timeout: float) -> ocsp.OCSPResponse:
    """POST an OCSP request (RFC 6960 appendix A) and parse the answer."""
    http_request = urllib.request.Request(
        url,
        data=request_der,
        headers={"Content-Type": "application/ocsp-request"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as answer:
            return ocsp.load_der_ocsp_response(answer.read())
    except urllib.error.HTTPError as error:
        error.close()  # it holds the connection
        raise


def query_ocsp(
    pki: TestPki, serial: int, timeout: float = NOTIFY_TIMEOUT_SECONDS
) -> ocsp.OCSPResponse:
    """Ask the PKI's responder for the status of one of its certificates."""
    ca = pki.issuing_ca(serial)
    request = ocsp_request_der(pki.certificate(serial), pki.authority(ca).certificate)
    return post_ocsp_request(pki.ocsp_url(ca), request, timeout)


def notify_responder(pki: TestPki, ca: str, serial: int) -> None:
    """Make a running responder for ``ca`` reload its index (see the module docstring).

    Does nothing when no responder is running."""
    try:
        query_ocsp(pki, serial)
    except (OSError, ValueError):
        pass  # no responder listening (or not ours): nothing to refresh


# --- CRL HTTP server ---------------------------------------------------------------------------


class _PkiHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    pki_directory: Path


class _PkiHttpServerIPv6(_PkiHttpServer):
    address_family = socket.AF_INET6


class CrlRequestHandler(BaseHTTPRequestHandler):
    """GET /<ca>.crl (DER CRL), /<ca>.crl.pem, /<ca>.crt (DER CA certificate), read per request."""

    server: _PkiHttpServer
    content_types: ClassVar[dict[str, str]] = {
        ".crl": "application/pkix-crl",
        ".crl.pem": "application/x-pem-file",
        ".crt": "application/pkix-cert",
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        found = self._resolve(self.path.split("?", 1)[0])
        if found is None:
            self.send_error(404, "not found")
            return
        path, content_type = found
        try:
            body = path.read_bytes()
        except OSError:
            self.send_error(404, "not found")
            return
        if path.name == "ca.pem":
            body = x509.load_pem_x509_certificate(body).public_bytes(serialization.Encoding.DER)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _resolve(self, request_path: str) -> tuple[Path, str] | None:
        files = {".crl": "crl.der", ".crl.pem": "crl.pem", ".crt": "ca.pem"}
        for ca in CA_NAMES:
            for suffix, file_name in files.items():
                if request_path == f"/{ca}{suffix}":
                    return self.server.pki_directory / ca / file_name, self.content_types[suffix]
        return None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: tests and `pki serve` print their own lines


# --- OCSP responders ---------------------------------------------------------------------------


@dataclass
class OcspResponder:
    ca: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def log_tail(self) -> str:
        self.log.flush()
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"


# The SM2 CA's responder signs SM2-with-SM3 with the signer ID 1234567812345678: OpenSSL would
# otherwise hash with SHA-256 and sign with an empty ID.
SM2_RESPONDER_OPTIONS: dict[str, tuple[str, ...]] = {
    "sm2": ("-rmd", "sm3", "-rsigopt", "distid:1234567812345678"),
}


def responder_command(pki: TestPki, ca: str) -> list[str]:
    signer_cert, signer_key = pki.ocsp_signer_paths(ca)
    ca_cert = pki.ca_certificate_path(ca)
    die_with_parent = [_SETPRIV, "--pdeathsig", "TERM"] if _SETPRIV else []
    return [
        *die_with_parent,
        "openssl",
        "ocsp",
        "-index", str(pki.index_path(ca)),
        "-CA", str(ca_cert),
        "-rsigner", str(signer_cert),
        "-rkey", str(signer_key),
        "-rother", str(ca_cert),
        "-port", str(pki.ocsp_port_of(ca)),
        "-nmin", str(OCSP_NEXT_UPDATE_MINUTES),
        "-ignore_err",  # a malformed request must not stop the responder
        *SM2_RESPONDER_OPTIONS.get(ca, ()),
    ]  # fmt: skip


@dataclass
class RunningPki:
    """The PKI's CRL server and OCSP responders; started by ``TestPki.serve``."""

    pki: TestPki
    responders: dict[str, OcspResponder] = field(default_factory=dict)
    _http: _PkiHttpServer | None = None
    _http_thread: threading.Thread | None = None

    def crl_url(self, ca: str = "rsa") -> str:
        return self.pki.crl_url(ca)

    def ocsp_url(self, ca: str = "rsa") -> str:
        return self.pki.ocsp_url(ca)

    def start(self) -> None:
        try:
            for ca in CA_NAMES:
                self.responders[ca] = self._start_responder(ca)
            self._start_http()
            for responder in self.responders.values():
                self._wait_until_answering(responder)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None
        for responder in self.responders.values():
            _stop_process(responder.process)
            responder.log.close()
        self.responders.clear()

    def _start_http(self) -> None:
        host = self.pki.host
        server_class = _PkiHttpServerIPv6 if ":" in host else _PkiHttpServer
        try:
            server = server_class((host, self.pki.crl_port), CrlRequestHandler)
        except OSError as error:
            raise ResponderFailed(
                f"cannot serve CRLs on {host}:{self.pki.crl_port}: {error.strerror}"
            ) from error
        server.pki_directory = self.pki.directory
        self._http = server
        self._http_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="pki-crl-http"
        )
        self._http_thread.start()

    def _start_responder(self, ca: str) -> OcspResponder:
        log_path = self.pki.directory / "logs" / f"ocsp-{ca}.log"
        log_path.parent.mkdir(exist_ok=True)
        log = log_path.open("wb")
        process = subprocess.Popen(
            responder_command(self.pki, ca),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return OcspResponder(ca, process, log_path, log)

    def _wait_until_answering(self, responder: OcspResponder) -> None:
        signer_cert, _ = self.pki.ocsp_signer_paths(responder.ca)
        signer = x509.load_pem_x509_certificate(signer_cert.read_bytes())
        request = ocsp_request_der(signer, self.pki.authority(responder.ca).certificate)
        url = self.pki.ocsp_url(responder.ca)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if responder.process.poll() is not None:
                raise ResponderFailed(
                    f"openssl ocsp for CA {responder.ca} on port "
                    f"{self.pki.ocsp_port_of(responder.ca)} exited: {responder.log_tail()}"
                )
            try:
                post_ocsp_request(url, request, timeout=NOTIFY_TIMEOUT_SECONDS)
                return
            except (OSError, ValueError) as error:
                if time.monotonic() > deadline:
                    raise ResponderFailed(
                        f"openssl ocsp for CA {responder.ca} does not answer at {url}: {error}"
                    ) from error
                time.sleep(0.05)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
