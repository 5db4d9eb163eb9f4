"""Single sign-on code flows per second against a real gateway, beside a bare request on it.

The gateway runs as ``certgate serve`` in a child process on a free loopback port (waitress,
8 threads), with a SQLite database in a temporary folder, one person account and one
confidential OpenID Connect client registered ``--consent skip``. 8 client threads in this
process, each on its own keep-alive connection and already signed in (a password login at the
start, not measured), repeat:

- **bare**: ``GET /api/v1/session`` without a cookie (as in ``bench/bench_login.py``), the
  reference for what one request costs. Half before the flows and half after, counted together;
- **code flow**: what a relying party and the person's browser do once the person is signed in
  at the gateway: ``GET /oauth/authorize`` with the session cookie, PKCE S256, state and nonce
  (→ ``302`` with the code), ``POST /oauth/token`` with ``client_secret_basic`` and the verifier
  (→ access token and an RS256-signed ID token), ``GET /oauth/userinfo`` with the access token.
  Every check, write and audit record runs as in production.

Goal: one whole code flow (three requests and the work behind them) costs no more than 3 bare
requests, i.e. ``bare requests/s ÷ flows/s ≤ 3``. The table also shows the server process's own
CPU time per operation and the same ratio by that measure.

Run: ``.venv/bin/python -m bench.bench_sso [--flows N] [--bare N]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bench.bench_login import (
    CLIENTS,
    DATA_KEY,
    SERVER_THREADS,
    Phase,
    _environment,
    print_phases,
    run_phase,
    wait_until_serving,
)
from tests.fixtures_pki import free_port

PASSWORD = "bench-sso-password-2026"
LOGIN_NAME = "bench-person"
ID_CARD_NUMBER = "11010519491231002X"
CALLBACK = "https://app.example.cn/callback"
SCOPE = "openid profile"


class Client:
    """One keep-alive connection: the person's browser (its gateway cookies) and the relying
    party (its client credentials) on the same connection."""

    def __init__(self, port: int, origin: str, client_id: str, client_secret: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.origin = origin
        self.cookies: dict[str, str] = {}
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.basic = f"Basic {basic}"
        self.client_id = client_id

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        cookies: bool = True,
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        sent = dict(headers or {})
        if cookies and self.cookies and "Authorization" not in sent:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.connection.request(method, path, body=body, headers=sent)
        response = self.connection.getresponse()
        payload = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response.status, response, payload

    def sign_in(self) -> None:
        """A password login, so the code flows find a gateway session (not measured)."""
        body = json.dumps({"identifier": LOGIN_NAME, "password": PASSWORD}).encode()
        status, _response, payload = self.request(
            "POST",
            "/api/v1/login/password",
            body,
            {"Origin": self.origin, "Content-Type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"password login: {status} {payload[:200]!r}")

    def bare(self) -> None:
        status, _response, payload = self.request("GET", "/api/v1/session", cookies=False)
        if status != 401:
            raise RuntimeError(f"bare request: {status} {payload[:200]!r}")

    def code_flow(self) -> None:
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": CALLBACK,
                "scope": SCOPE,
                "state": secrets.token_urlsafe(8),
                "nonce": secrets.token_urlsafe(8),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        status, response, payload = self.request("GET", "/oauth/authorize?" + query)
        location = response.headers.get("Location", "")
        if status != 302 or not location.startswith(CALLBACK + "?"):
            raise RuntimeError(f"authorize: {status} {location[:120]} {payload[:120]!r}")
        code = parse_qs(urlsplit(location).query)["code"][0]
        form = urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
            }
        ).encode()
        status, _response, payload = self.request(
            "POST",
            "/oauth/token",
            form,
            {"Authorization": self.basic, "Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise RuntimeError(f"token: {status} {payload[:200]!r}")
        token: dict[str, Any] = json.loads(payload)
        if "id_token" not in token:
            raise RuntimeError("token: no id_token")
        status, _response, payload = self.request(
            "GET", "/oauth/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        if status != 200 or "sub" not in json.loads(payload):
            raise RuntimeError(f"userinfo: {status} {payload[:200]!r}")

    def close(self) -> None:
        self.connection.close()


def _write_config(directory: Path, port: int) -> None:
    (directory / "certgate.toml").write_text(
        f"""\
public_origin = "http://127.0.0.1:{port}"
database_url = "sqlite:///{directory / "certgate.sqlite3"}"
# Raised for the benchmark: all clients share 127.0.0.1 (see bench/bench_login.py).
address_attempt_limit = 1000000
account_attempt_limit = 1000000
challenge_limit = 1000000
""",
        encoding="utf-8",
    )


def _prepare(directory: Path) -> tuple[str, str]:
    """The person and the client, made before the server starts; (client_id, secret)."""
    from gateway import create_app
    from gateway.accounts import get_accounts
    from gateway.clock import EXTENSION as CLOCK
    from gateway.sso.clients import get_clients

    app = create_app(
        {"CONFIG_FILE": str(directory / "certgate.toml"), "DATA_KEY": DATA_KEY}, operator=True
    )
    now = app.extensions[CLOCK].now()
    get_accounts(app).create_person(
        real_name="基准测试",
        id_card_number=ID_CARD_NUMBER,
        login_name=LOGIN_NAME,
        password=PASSWORD,
        at=now,
    )
    made = get_clients(app).add(
        "基准测试应用", protocol="oidc", at=now, redirect_uris=(CALLBACK,), consent="skip"
    )
    app.extensions["certgate.database"].close()
    assert made.client_secret is not None
    return made.client.client_id, made.client_secret


def _start_server(directory: Path, port: int) -> subprocess.Popen[bytes]:
    certgate = Path(sys.executable).with_name("certgate")
    command = (
        [str(certgate)]
        if certgate.exists()
        else [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())"]
    )
    process = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--threads", str(SERVER_THREADS)],
        cwd=directory,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_until_serving(process, port)


def _flowing(_index: int, client: Any) -> None:
    client.code_flow()


def _bare(_index: int, client: Any) -> None:
    client.bare()


@dataclass(frozen=True)
class Result:
    bare: Phase
    flows: Phase


def run(*, flows: int = 100, bare: int = 400) -> Result:
    directory = Path(tempfile.mkdtemp(prefix="certgate-bench-sso-"))
    process = None
    try:
        port = free_port()
        _write_config(directory, port)
        client_id, client_secret = _prepare(directory)
        process = _start_server(directory, port)
        origin = f"http://127.0.0.1:{port}"
        clients = [Client(port, origin, client_id, client_secret) for _ in range(CLIENTS)]
        try:
            for client in clients:
                client.sign_in()
            run_phase("warm-up", clients, _flowing, 5)
            run_phase("warm-up", clients, _bare, 20)
            pid = process.pid
            before = run_phase("bare", clients, _bare, bare // 2, server_pid=pid)
            flow_phase = run_phase("code flow", clients, _flowing, flows, server_pid=pid)
            after = run_phase("bare", clients, _bare, bare // 2, server_pid=pid)
        finally:
            for client in clients:
                client.close()
        return Result(before.joined(after), flow_phase)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def print_result(result: Result) -> None:
    print(
        f"\nSingle sign-on code flows: {CLIENTS} concurrent clients signed in at the gateway, "
        f"certgate serve (waitress, {SERVER_THREADS} threads), SQLite, loopback"
    )
    print_phases(
        "bare requests/flow",
        result.bare,
        [
            ("bare GET /api/v1/session", result.bare, ""),
            ("code flow: authorize + token + userinfo", result.flows, " (goal ≤ 3)"),
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=100, help="code flows per client")
    parser.add_argument("--bare", type=int, default=400, help="bare requests per client")
    arguments = parser.parse_args(argv if argv is not None else [])
    print_result(run(flows=arguments.flows, bare=arguments.bare))


if __name__ == "__main__":
    main(sys.argv[1:])
