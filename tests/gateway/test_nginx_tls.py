"""TLS client-certificate login behind a real nginx (Debian's /usr/sbin/nginx).

nginx runs as a child of the test with its own prefix, configuration, pid file, logs and temp
folders in a temporary directory (nothing under /etc/nginx or /var), on a free loopback port. It
verifies the client certificate against the test PKI's root and intermediates
(``ssl_verify_client optional``) and passes it to a real ``certgate serve`` (waitress) process in
``$ssl_client_escaped_cert``. The ``location`` block's ``proxy_set_header`` lines are read from
docs/gateway.md's example, so the test runs the configuration the docs give. A second ``server``
on another port sets only ``X-SSL-Client-Cert`` and blanks no other header (a proxy set up
carelessly): a client's own ``Client-Cert`` then reaches the gateway from the trusted proxy. nginx
connects to the gateway from 127.0.0.2 (``proxy_bind``), the only address in
``trusted_proxies``; the test itself talks to the gateway from 127.0.0.1, an untrusted peer, to
show that forged headers sent around the proxy are ignored and audited.

The PKI runs on the real clock here (nginx checks validity dates against the real clock too), so
the certificates and CRLs are fresh on any day the test runs.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.proxy import CLIENT_CERTIFICATE_HEADERS
from softhsm.pki import CA_NAMES, IssuedCertificate, TestPki, random_id_card_number
from tests.fixtures_pki import free_port, free_port_block
from tests.gateway.conftest import DATA_KEY
from tests.gateway.test_serve import CERTGATE, clean_environment, running_server

NGINX = "/usr/sbin/nginx"
PROXY_SOURCE = "127.0.0.2"  # nginx's address towards the gateway: the trusted proxy
CLIENT_SOURCE = "127.0.0.1"  # the test's own address: not trusted

pytestmark = pytest.mark.skipif(
    not os.access(NGINX, os.X_OK), reason="nginx is not installed (make test installs it)"
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def documented_nginx() -> tuple[str, list[str]]:
    """The ``map`` block and the ``location`` block's ``proxy_set_header`` lines of the nginx
    example in docs/gateway.md ("Behind nginx"), as written there."""
    section = DOCS.read_text(encoding="utf-8").split("## Behind nginx", 1)[1]
    example = section.split("```nginx\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in example.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("map "))
    end = lines.index("}", start)
    headers = [line for line in lines if line.startswith("proxy_set_header ")]
    return "\n".join(lines[start : end + 1]), headers


# The configuration docs/gateway.md recommends, on temporary paths, and beside it a careless one.
# {user} is "user root;" when the test runs as root: then nginx needs no other account
# (master_process off runs no workers).
NGINX_CONF = """\
{user}
daemon off;
master_process off;
pid {d}/nginx.pid;
lock_file {d}/nginx.lock;
error_log {d}/error.log info;
events {{ worker_connections 64; }}

http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    # Pass the certificate only when nginx verified it (from docs/gateway.md).
    {map_block}

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {d}/server-chain.pem;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/client-ca.pem;
        ssl_verify_client optional;
        ssl_verify_depth 2;

        location /api/ {{
            proxy_pass http://127.0.0.1:{gateway_port};
            proxy_bind {proxy_source};
            # docs/gateway.md's headers: the configured one set, every other one blanked.
            {documented_headers}
        }}
    }}

    # Careless: sets the configured header and blanks nothing else.
    server {{
        listen 127.0.0.1:{careless_port} ssl;
        server_name localhost;
        ssl_certificate {d}/server-chain.pem;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/client-ca.pem;
        ssl_verify_client optional;
        ssl_verify_depth 2;

        location /api/ {{
            proxy_pass http://127.0.0.1:{gateway_port};
            proxy_bind {proxy_source};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-SSL-Client-Cert $certgate_client_cert;
        }}
    }}
}}
"""


@dataclass
class Deployment:
    pki: TestPki
    directory: Path
    nginx_port: int  # the documented configuration
    careless_port: int  # sets X-SSL-Client-Cert, blanks nothing
    gateway_url: str
    holder: IssuedCertificate  # has an account
    stranger: IssuedCertificate  # valid certificate, no account
    account_id: str
    env: dict[str, str]

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.nginx_port}"

    def client_context(self, certificate: IssuedCertificate | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_certificate_path("root")))
        if certificate is not None:
            assert certificate.key_path is not None
            # The leaf with its chain, as a browser sends it.
            context.load_cert_chain(str(certificate.chain_path), str(certificate.key_path))
        return context

    def via_nginx(
        self,
        method: str,
        path: str,
        *,
        certificate: IssuedCertificate | None = None,
        context: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None,
        port: int | None = None,
    ) -> tuple[int, Any, http.client.HTTPResponse]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1",
            port or self.nginx_port,
            context=context or self.client_context(certificate),
            timeout=30,
        )
        return _exchange(connection, method, path, self.origin, headers)

    def direct(self, path: str, headers: dict[str, str]) -> tuple[int, Any, Any]:
        host, port = self.gateway_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(
            host, int(port), timeout=30, source_address=(CLIENT_SOURCE, 0)
        )
        return _exchange(connection, "POST", path, self.origin, headers)

    def audit(self) -> list[dict[str, Any]]:
        result = subprocess.run(
            [CERTGATE, "audit", "list", "--json", "--limit", "1000"],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return [json.loads(line) for line in result.stdout.splitlines()]


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    origin: str,
    headers: dict[str, str] | None,
) -> tuple[int, Any, http.client.HTTPResponse]:
    try:
        body = b"{}" if method == "POST" else None
        connection.request(
            method,
            path,
            body=body,
            headers={"Origin": origin, "Content-Type": "application/json", **(headers or {})},
        )
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        parsed: Any = json.loads(data)
    except ValueError:
        parsed = data.decode("utf-8", "replace")
    return response.status, parsed, response


def server_certificate(pki: TestPki, directory: Path) -> None:
    """A TLS server certificate for 127.0.0.1 / localhost from the test PKI's RSA intermediate
    (``TestPki.issue`` makes client certificates only)."""
    issuer = pki.authority("rsa")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),
            critical=False,
        )
        .sign(issuer.private_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "server-chain.pem").write_bytes(
        certificate.public_bytes(pem) + issuer.certificate.public_bytes(pem)
    )
    (directory / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "server.key").chmod(0o600)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # waiting for start-up, not a timing assertion
        if process.poll() is not None:
            pytest.fail(f"nginx exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nginx did not listen on {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("nginx-tls")
    pki = TestPki.create(
        base / "pki", crl_port=free_port(), ocsp_port=free_port_block(len(CA_NAMES))
    )
    number = random_id_card_number()
    holder = pki.issue("person", "冯十二", id_number=number)
    stranger = pki.issue("person", "陈十三", id_number=random_id_card_number())

    gateway_dir = base / "gateway"
    gateway_dir.mkdir()
    nginx_dir = base / "nginx"
    nginx_dir.mkdir()
    nginx_port, careless_port, gateway_port = free_port(), free_port(), free_port()
    origin = f"https://127.0.0.1:{nginx_port}"
    anchor_files = [pki.ca_certificate_path(ca) for ca in ("root", "rsa", "p256")]
    (gateway_dir / "certgate.toml").write_text(
        f"""\
public_origin = "{origin}"
trusted_proxies = ["{PROXY_SOURCE}"]

[[trust.anchors]]
name = "CertGate Test Root"
certificate = "{anchor_files[0]}"
intermediates = ["{anchor_files[1]}", "{anchor_files[2]}"]
revocation = "hard-fail"
crl = [{", ".join(f'"{pki.crl_path(ca)}"' for ca in ("rsa", "p256", "root"))}]
""",
        encoding="utf-8",
    )
    env = clean_environment(CERTGATE_DATA_KEY=DATA_KEY)
    subprocess.run(
        [CERTGATE, "account", "create", "person", number, "--real-name", "冯十二"],
        cwd=gateway_dir, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    listed = subprocess.run(
        [CERTGATE, "account", "list", "--json"],
        cwd=gateway_dir, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    account_id = json.loads(listed.stdout.splitlines()[0])["id"]

    server_certificate(pki, nginx_dir)
    (nginx_dir / "client-ca.pem").write_bytes(b"".join(p.read_bytes() for p in anchor_files))
    user = "user root root;" if os.geteuid() == 0 else ""
    map_block, documented_headers = documented_nginx()
    (nginx_dir / "nginx.conf").write_text(
        NGINX_CONF.format(
            user=user,
            d=nginx_dir,
            port=nginx_port,
            careless_port=careless_port,
            gateway_port=gateway_port,
            proxy_source=PROXY_SOURCE,
            map_block=map_block.replace("\n", "\n    "),
            documented_headers="\n            ".join(documented_headers),
        )
    )
    test_config = subprocess.run(
        [NGINX, "-t", "-q", "-p", f"{nginx_dir}/", "-c", str(nginx_dir / "nginx.conf"),
         "-e", str(nginx_dir / "error.log")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert test_config.returncode == 0, test_config.stderr

    with running_server(gateway_dir, env, gateway_port) as gateway_url:
        nginx = subprocess.Popen(
            [NGINX, "-p", f"{nginx_dir}/", "-c", str(nginx_dir / "nginx.conf"),
             "-e", str(nginx_dir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_port(nginx, nginx_port, nginx_dir / "error.log")
            _wait_for_port(nginx, careless_port, nginx_dir / "error.log")
            yield Deployment(
                pki=pki,
                directory=gateway_dir,
                nginx_port=nginx_port,
                careless_port=careless_port,
                gateway_url=gateway_url,
                holder=holder,
                stranger=stranger,
                account_id=account_id,
                env=env,
            )
        finally:
            nginx.terminate()
            nginx.wait(timeout=30)
    shutil.rmtree(base, ignore_errors=True)


def _thumbprint(issued: IssuedCertificate) -> str:
    return issued.certificate.fingerprint(hashes.SHA256()).hex()


def _escaped_pem(issued: IssuedCertificate) -> str:
    pem = issued.certificate.public_bytes(serialization.Encoding.PEM).decode()
    return quote(pem, safe="")


def _rfc9440(issued: IssuedCertificate) -> str:
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    return ":" + base64.b64encode(der).decode() + ":"


def test_client_certificate_logs_in_through_nginx(deployment: Deployment) -> None:
    status, body, response = deployment.via_nginx(
        "POST",
        "/api/v1/login/tls",
        certificate=deployment.holder,
        # A forged address in front of nginx's own hop is not believed.
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert status == 200, body
    assert body["ok"] is True and body["amr"] == ["x509"]
    assert body["account"]["id"] == deployment.account_id
    cookie = response.getheader("Set-Cookie") or ""
    assert cookie.startswith("__Host-certgate_session=") and "Secure" in cookie

    # The session works through nginx (no client certificate needed for that).
    session_cookie = cookie.split(";", 1)[0]
    status, body, _ = deployment.via_nginx(
        "GET", "/api/v1/session", headers={"Cookie": session_cookie}
    )
    assert status == 200 and body["account"]["id"] == deployment.account_id

    records = [r for r in deployment.audit() if r["thumbprint"] == _thumbprint(deployment.holder)]
    assert [(r["event"], r["method"], r["outcome"]) for r in records] == [("login", "tls", "ok")]
    assert records[0]["address"] == CLIENT_SOURCE  # the client behind nginx, not nginx


def test_no_client_certificate_fails_cleanly(deployment: Deployment) -> None:
    status, body, _ = deployment.via_nginx("POST", "/api/v1/login/tls")
    assert status == 400
    assert body["ok"] is False and body["error"] == "bad_request"


def test_valid_certificate_without_account(deployment: Deployment) -> None:
    status, body, _ = deployment.via_nginx(
        "POST", "/api/v1/login/tls", certificate=deployment.stranger
    )
    assert status == 401 and body["error"] == "account_not_found"


def test_certificate_from_another_ca_is_stopped_by_nginx(
    deployment: Deployment, tmp_path: Path
) -> None:
    other = TestPki.create(
        tmp_path / "other-pki", crl_port=free_port(), ocsp_port=free_port_block(len(CA_NAMES))
    )
    outsider = other.issue("person", "冯十二", id_number=random_id_card_number())
    context = ssl.create_default_context(cafile=str(deployment.pki.ca_certificate_path("root")))
    assert outsider.key_path is not None
    context.load_cert_chain(str(outsider.cert_path), str(outsider.key_path))
    status, body, _ = deployment.via_nginx("POST", "/api/v1/login/tls", context=context)
    assert status == 400 and "SSL certificate error" in str(body)
    assert _thumbprint(outsider) not in {r["thumbprint"] for r in deployment.audit()}


def _every_certificate_header(issued: IssuedCertificate) -> dict[str, str]:
    """``issued``'s certificate under every client-certificate header the gateway knows, in the
    form each one usually carries, and a lower-case ``client-cert`` besides."""
    headers = {name: _escaped_pem(issued) for name in CLIENT_CERTIFICATE_HEADERS}
    return {**headers, "Client-Cert": _rfc9440(issued), "client-cert": _rfc9440(issued)}


def _new_records(deployment: Deployment, before: set[int]) -> list[dict[str, Any]]:
    return [r for r in deployment.audit() if r["id"] not in before]


def test_documented_nginx_blanks_every_certificate_header(deployment: Deployment) -> None:
    _, documented = documented_nginx()
    blanked = {line.split()[1].lower() for line in documented if line.endswith('"";')}
    set_by_nginx = {
        line.split()[1].lower() for line in documented if "$certgate_client_cert" in line
    }
    assert set_by_nginx == {"x-ssl-client-cert"}  # the gateway's default tls_client_cert_header
    assert blanked == {name.lower() for name in CLIENT_CERTIFICATE_HEADERS} - set_by_nginx

    forged = _every_certificate_header(deployment.holder)
    before = {r["id"] for r in deployment.audit()}
    # Without a client certificate: nginx drops every one of the client's headers.
    status, body, _ = deployment.via_nginx("POST", "/api/v1/login/tls", headers=forged)
    assert status == 400 and body["error"] == "bad_request"
    # With the stranger's own certificate: the login is the stranger's, not the holder's.
    status, body, _ = deployment.via_nginx(
        "POST", "/api/v1/login/tls", certificate=deployment.stranger, headers=forged
    )
    assert status == 401 and body["error"] == "account_not_found"
    # None of them reached the gateway: nothing was there to ignore.
    new = _new_records(deployment, before)
    assert [(r["event"], r["outcome"]) for r in new] == [
        ("login", "bad_request"),
        ("login", "account_not_found"),
    ]
    assert new[1]["thumbprint"] == _thumbprint(deployment.stranger)


@pytest.mark.parametrize(
    ("server", "ignored"),
    [("documented", False), ("careless", True)],
)
def test_forged_client_cert_without_a_certificate_does_not_sign_in(
    deployment: Deployment, server: str, ignored: bool
) -> None:
    # Someone with no client certificate sends the holder's (public) certificate as RFC 9440
    # Client-Cert. Through the careless proxy it reaches the gateway from the trusted proxy.
    port = deployment.nginx_port if server == "documented" else deployment.careless_port
    before = {r["id"] for r in deployment.audit()}
    status, body, response = deployment.via_nginx(
        "POST", "/api/v1/login/tls", headers={"Client-Cert": _rfc9440(deployment.holder)}, port=port
    )
    assert status == 400 and body["error"] == "bad_request", body
    assert response.getheader("Set-Cookie") is None
    new = _new_records(deployment, before)
    expected = [("login", "bad_request", CLIENT_SOURCE)]
    if ignored:
        expected.insert(0, ("tls_header_ignored", "ignored", CLIENT_SOURCE))
        assert new[0]["detail"] == (
            "client certificate header Client-Cert from a trusted proxy "
            "(believed: X-SSL-Client-Cert from a trusted proxy)"
        )
    assert [(r["event"], r["outcome"], r["address"]) for r in new] == expected
    assert all(r["account"] is None and r["thumbprint"] is None for r in new)


def test_careless_proxy_passes_the_verified_certificate_not_the_forged_one(
    deployment: Deployment,
) -> None:
    before = {r["id"] for r in deployment.audit()}
    status, body, _ = deployment.via_nginx(
        "POST",
        "/api/v1/login/tls",
        certificate=deployment.stranger,
        headers={"Client-Cert": _rfc9440(deployment.holder)},
        port=deployment.careless_port,
    )
    assert status == 401 and body["error"] == "account_not_found"
    new = _new_records(deployment, before)
    assert [(r["event"], r["outcome"]) for r in new] == [
        ("tls_header_ignored", "ignored"),
        ("login", "account_not_found"),
    ]
    assert new[1]["thumbprint"] == _thumbprint(deployment.stranger)


@pytest.mark.parametrize(
    "forged",
    [
        lambda issued: {"Client-Cert": _rfc9440(issued)},
        lambda issued: {"X-SSL-Client-Cert": _escaped_pem(issued)},
        lambda issued: {"X-ARR-ClientCert": _escaped_pem(issued)},
    ],
    ids=["rfc9440", "escaped-pem", "arr"],
)
def test_forged_header_sent_around_nginx_is_ignored_and_audited(
    deployment: Deployment, forged: Any
) -> None:
    before = {r["id"] for r in deployment.audit()}
    status, body, _ = deployment.direct("/api/v1/login/tls", forged(deployment.holder))
    assert status == 400 and body["error"] == "bad_request"
    new = [r for r in deployment.audit() if r["id"] not in before]
    assert [(r["event"], r["outcome"], r["address"]) for r in new] == [
        ("tls_header_ignored", "ignored", CLIENT_SOURCE),
        ("login", "bad_request", CLIENT_SOURCE),
    ]
    assert all(r["account"] is None for r in new)
