"""A small OCSP test PKI and real `openssl ocsp` responders for tests/certs/test_ocsp*.py.

Everything is generated at test time: a CA, delegated responder certificates (good and broken
ones), leaves whose AIA points at a responder, an OpenSSL ``ca``-style ``index.txt``, and one
``openssl ocsp`` process per responder configuration on a loopback port. ``OcspProxy`` sits
between the client and a responder to capture, replay or alter real responses; ``SilentServer``
accepts connections and never answers.

The responders stamp thisUpdate with the real clock, so the PKI is anchored at the moment it is
created (``OcspPki.now``) and tests validate at fixed offsets from it.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certs.fetch import Fetcher

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# OpenSSL index.txt revocation reason tokens (apps/lib/apps.c crl_reasons).
INDEX_REASONS = {
    "unspecified": "unspecified",
    "key_compromise": "keyCompromise",
    "ca_compromise": "CACompromise",
    "affiliation_changed": "affiliationChanged",
    "superseded": "superseded",
    "cessation_of_operation": "cessationOfOperation",
    "certificate_hold": "certificateHold",
    "remove_from_crl": "removeFromCRL",
}

CA_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CertGate Test"),
        x509.NameAttribute(NameOID.COMMON_NAME, "CertGate OCSP Test CA"),
    ]
)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CertGate Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


@dataclass
class Issued:
    certificate: x509.Certificate
    key: PrivateKey
    cert_path: Path
    key_path: Path


def issue(
    directory: Path,
    file_stem: str,
    subject: x509.Name,
    key: PrivateKey,
    *,
    issuer: Issued | None,
    not_before: datetime,
    not_after: datetime,
    ca: bool = False,
    eku: list[x509.ObjectIdentifier] | None = None,
    key_usage: x509.KeyUsage | None = None,
    ocsp_url: str | None = None,
    serial: int | None = None,
) -> Issued:
    """Make a certificate (self-signed when ``issuer`` is None) and write it with its key."""
    signer_key = key if issuer is None else issuer.key
    issuer_name = subject if issuer is None else issuer.certificate.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_ski(key), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if key_usage is None:
        key_usage = _key_usage(cert_sign=ca)
    builder = builder.add_extension(key_usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if ocsp_url is not None:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
                    )
                ]
            ),
            critical=False,
        )
    certificate = builder.sign(signer_key, hashes.SHA256())
    cert_path = directory / f"{file_stem}.pem"
    key_path = directory / f"{file_stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(certificate, key, cert_path, key_path)


def _key_usage(*, cert_sign: bool = False, digital_signature: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _index_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%y%m%d%H%M%SZ")


def _index_serial(serial: int) -> str:
    # openssl ocsp looks serials up as BN_bn2hex prints them: upper case, whole bytes.
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


@dataclass(frozen=True)
class ResponderConfig:
    """One `openssl ocsp` responder: who signs, and with which options."""

    signer: str  # key of OcspPki.responders ("ca" for the CA itself)
    options: tuple[str, ...] = ("-nmin", "5")


# Responder configurations the tests use, by name.
RESPONDER_CONFIGS: dict[str, ResponderConfig] = {
    "delegated": ResponderConfig("delegated"),
    "delegated_key_id": ResponderConfig("delegated", ("-nmin", "5", "-resp_key_id")),
    "delegated_no_certs": ResponderConfig("delegated", ("-nmin", "5", "-resp_no_certs")),
    "delegated_no_next_update": ResponderConfig("delegated", ()),
    "ca": ResponderConfig("ca"),
    "ca_key_id_no_certs": ResponderConfig("ca", ("-nmin", "5", "-resp_key_id", "-resp_no_certs")),
    "ca_pss": ResponderConfig(
        "ca", ("-nmin", "5", "-rsigopt", "rsa_padding_mode:pss", "-rsigopt", "rsa_pss_saltlen:32")
    ),
    "no_ocsp_eku": ResponderConfig("no_ocsp_eku"),
    "no_digital_signature": ResponderConfig("no_digital_signature"),
    "other_ca": ResponderConfig("other_ca"),
    "lookalike_ca": ResponderConfig("lookalike_ca"),
    "expired": ResponderConfig("expired"),
}


@dataclass
class OcspPki:
    directory: Path
    now: datetime
    ca: Issued
    responders: dict[str, Issued]
    leaves: dict[str, Issued]
    revocations: dict[str, tuple[datetime, str | None]]
    index_path: Path
    _processes: dict[str, tuple[subprocess.Popen[bytes], str]] = field(default_factory=dict)
    _logs: list[object] = field(default_factory=list)

    @property
    def at(self) -> datetime:
        """A validation moment inside every response's thisUpdate..nextUpdate window."""
        return self.now + timedelta(minutes=1)

    @classmethod
    def create(cls, directory: Path) -> OcspPki:
        now = datetime.now(UTC).replace(microsecond=0)
        start, end = now - timedelta(days=1), now + timedelta(days=365)
        ca = issue(
            directory,
            "ca",
            CA_NAME,
            rsa.generate_private_key(65537, 2048),
            issuer=None,
            not_before=start,
            not_after=end,
            ca=True,
        )
        other_ca = issue(
            directory,
            "other-ca",
            _name("Unrelated Test CA"),
            ec.generate_private_key(ec.SECP256R1()),
            issuer=None,
            not_before=start,
            not_after=end,
            ca=True,
        )
        # Same subject as the real CA, different key: a forger's "CA".
        lookalike_ca = issue(
            directory,
            "lookalike-ca",
            CA_NAME,
            ec.generate_private_key(ec.SECP256R1()),
            issuer=None,
            not_before=start,
            not_after=end,
            ca=True,
        )
        ocsp_signing = [ExtendedKeyUsageOID.OCSP_SIGNING]

        def responder(stem: str, issuer: Issued, **options: object) -> Issued:
            settings: dict[str, object] = {
                "not_before": start,
                "not_after": end,
                "eku": ocsp_signing,
            }
            settings.update(options)
            return issue(
                directory,
                stem,
                _name(f"CertGate Test OCSP Responder {stem}"),
                ec.generate_private_key(ec.SECP256R1()),
                issuer=issuer,
                **settings,  # type: ignore[arg-type]
            )

        responders = {
            "ca": ca,
            "delegated": responder("delegated", ca),
            "no_ocsp_eku": responder("no-ocsp-eku", ca, eku=[ExtendedKeyUsageOID.CLIENT_AUTH]),
            "no_digital_signature": responder(
                "no-digital-signature", ca, key_usage=_key_usage(digital_signature=False)
            ),
            "other_ca": responder("other-ca-responder", other_ca),
            "lookalike_ca": responder("lookalike-ca-responder", lookalike_ca),
            "expired": responder(
                "expired",
                ca,
                not_before=now - timedelta(days=30),
                not_after=now - timedelta(days=1),
            ),
        }

        revoked_at = now - timedelta(hours=2)
        revocations: dict[str, tuple[datetime, str | None]] = {
            "revoked_key_compromise": (revoked_at, "key_compromise"),
            "revoked_ca_compromise": (revoked_at, "ca_compromise"),
            "revoked_superseded": (revoked_at, "superseded"),
            "revoked_certificate_hold": (revoked_at, "certificate_hold"),
            "revoked_no_reason": (revoked_at, None),
        }
        # Serials are chosen first so the index can be written and the AIA responder started
        # (on a port the kernel picks) before the leaves that name its URL are issued.
        stems = ("good", "good_2", "unknown", *revocations, "no_aia")
        serials = {stem: x509.random_serial_number() for stem in stems}
        lines = []
        for stem in stems:
            if stem == "unknown":
                continue  # the responder must answer "unknown" for it
            revocation = revocations.get(stem)
            if revocation is None:
                status, revoked_field = "V", ""
            else:
                moment, reason = revocation
                status = "R"
                revoked_field = _index_time(moment)
                if reason is not None:
                    revoked_field += "," + INDEX_REASONS[reason]
            subject = "/" + "/".join(
                f"{attr.rfc4514_attribute_name}={attr.value!s}" for attr in _name(f"leaf {stem}")
            )
            fields = [status, _index_time(end), revoked_field, _index_serial(serials[stem])]
            lines.append("\t".join([*fields, "unknown", subject]))
        index_path = directory / "index.txt"
        index_path.write_text("\n".join(lines) + "\n")

        pki = cls(
            directory=directory,
            now=now,
            ca=ca,
            responders=responders,
            leaves={},
            revocations=revocations,
            index_path=index_path,
        )
        aia_url = pki.responder_url("delegated")
        for stem in stems:
            pki.leaves[stem] = issue(
                directory,
                f"leaf-{stem}",
                _name(f"leaf {stem}"),
                ec.generate_private_key(ec.SECP256R1()),
                issuer=ca,
                not_before=start,
                not_after=end,
                eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
                ocsp_url=None if stem == "no_aia" else aia_url,
                serial=serials[stem],
            )
        return pki

    def responder_url(self, name: str) -> str:
        """URL of the named responder (RESPONDER_CONFIGS), started on first use."""
        if name not in self._processes:
            config = RESPONDER_CONFIGS[name]
            signer = self.responders[config.signer]
            log = (self.directory / f"ocsp-{name}.log").open("wb")
            self._logs.append(log)
            # -ignore_err keeps the responder up after a request it cannot parse.
            process = subprocess.Popen(
                [
                    "openssl",
                    "ocsp",
                    "-index",
                    str(self.index_path),
                    "-CA",
                    str(self.ca.cert_path),
                    "-rsigner",
                    str(signer.cert_path),
                    "-rkey",
                    str(signer.key_path),
                    "-port",
                    "0",  # the kernel picks a free port; the ACCEPT line reports it
                    "-ignore_err",
                    *config.options,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self._processes[name] = (process, "")
            port = _wait_until_listening(process, self.directory / f"ocsp-{name}.log")
            self._processes[name] = (process, f"http://127.0.0.1:{port}/")
        return self._processes[name][1]

    def close(self) -> None:
        for process, _url in self._processes.values():
            process.terminate()
        for process, _url in self._processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        for log in self._logs:
            log.close()  # type: ignore[attr-defined]
        self._logs.clear()


def _wait_until_listening(process: subprocess.Popen[bytes], log: Path) -> int:
    """Wait for the responder's ``ACCEPT [::]:<port>`` line; returns the port.

    Not by probing the port: OpenSSL 3.0's responder serves one connection at a time and a
    connection that closes without sending a request wedges it until it times out.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"openssl ocsp exited: {log.read_text(errors='replace')}")
        accepted = re.search(r"^ACCEPT .*:(\d+)", log.read_text(errors="replace"), re.M)
        if accepted:
            return int(accepted.group(1))
        time.sleep(0.02)
    raise RuntimeError(f"openssl ocsp did not start listening: {log.read_text(errors='replace')}")


class CountingFetcher:
    """Wraps a Fetcher and counts the requests that reach it (thread-safe)."""

    def __init__(self, inner: Fetcher) -> None:
        self.inner = inner
        self.posts = 0
        self.bodies: list[tuple[str, bytes]] = []  # (content type, request body)
        self._lock = threading.Lock()

    def get(self, url: str, *, timeout: float) -> bytes:
        return self.inner.get(url, timeout=timeout)

    def post(self, url: str, body: bytes, *, content_type: str, timeout: float) -> bytes:
        with self._lock:
            self.posts += 1
            self.bodies.append((content_type, body))
        return self.inner.post(url, body, content_type=content_type, timeout=timeout)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _ProxyServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", "0"))
        request_body = self.rfile.read(length)
        proxy = self.server.proxy
        if proxy.fixed_response is not None:
            body = proxy.fixed_response
        else:
            assert proxy.upstream is not None
            upstream = urllib.request.Request(
                proxy.upstream,
                data=request_body,
                method="POST",
                headers={"Content-Type": "application/ocsp-request"},
            )
            with urllib.request.urlopen(upstream, timeout=5) as answer:  # noqa: S310
                body = answer.read()
            with proxy.lock:
                proxy.captured.append(body)
            if proxy.transform is not None:
                body = proxy.transform(body)
        self.send_response(proxy.http_status)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep test output quiet


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    proxy: OcspProxy


class OcspProxy:
    """A real HTTP hop in front of a responder: forwards and captures, or replays, or alters.

    ``fixed_response`` set: every request gets those bytes (a replayed or forged response).
    Otherwise requests go to ``upstream``; the answers are kept in ``captured`` and passed
    through ``transform`` (if any) on their way back.
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.fixed_response: bytes | None = None
        self.transform: Callable[[bytes], bytes] | None = None
        self.http_status = 200
        self.captured: list[bytes] = []
        self.lock = threading.Lock()
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        port: int = self._server.socket.getsockname()[1]
        return f"http://127.0.0.1:{port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def ocsp_proxy(upstream: str | None = None) -> Iterator[OcspProxy]:
    proxy = OcspProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A URL whose server completes the TCP handshake and then never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # never accept(): the kernel still completes connections
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
