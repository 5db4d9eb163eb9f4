"""Full challenge logins per second against a real gateway, beside a bare request on it.

The gateway runs as a child process on a free loopback port (waitress, 8 threads), built and
served exactly as ``certgate serve`` does it, with a SQLite database in a temporary folder,
trusting a test PKI made for the run. The process also answers one bench-only route, the login
floor (``bench/login_floor.py``). 8 client threads in this process, each on its own keep-alive
connection, repeat:

- **bare**: ``GET /api/v1/session`` without a cookie (routing, origin and cookie checks, the JSON
  error answer and its log line; no database write), the reference for what one request costs.
  Half of them run before the logins and half after, counted together, so that the machine's
  drift during the run does not favour either side;
- **login**: ``POST /api/v1/login/challenge`` then ``POST /api/v1/login/token`` with the
  challenge signed by a software key over the bytes the signing agent signs
  (``tokens.login_message.login_message``), with an RSA-2048 or a P-256 certificate from the test
  PKI (one enterprise account and certificate per client). Chain validation, CRL check, mapping,
  session, attempt counting and the audit record all run as in production;
- **login floor**: the same two requests, the second one to the floor route, which does only
  what any challenge login must (the challenge, the signature, path validation by
  pyca/cryptography's verifier alone, a committed session and its cookie). The difference
  between the two login rows is what the checks on top of that floor cost: revocation, the
  engine's leaf checks, identity mapping, account state, attempt counting and the audit record.

Goal: a login (two requests and the work behind them) costs no more than 4 bare requests, i.e.
``bare requests/s ÷ logins/s ≤ 4``. Latencies are per bare request and per whole login (both
requests, client signing included). The clients run on the same machine, so the table also shows
the server process's own CPU time per operation (``/proc``) and the same ratio by that measure,
which the clients' signing and other load on the machine do not move.

The per-address, per-account and challenge limits are raised for the run
(``ADDRESS_ATTEMPT_LIMIT``, ``ACCOUNT_ATTEMPT_LIMIT``, ``CHALLENGE_LIMIT`` in the bench's
``certgate.toml``): every client shares 127.0.0.1 and would otherwise be ``rate_limited`` after
30 logins a minute, which is the limit doing its job, not the cost being measured.

Run: ``.venv/bin/python -m bench.bench_login [--logins N] [--bare N]``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from softhsm.pki import CA_NAMES, IssuedCertificate, KeyKind, TestPki, random_uscc
from tests.fixtures_pki import free_port, free_port_block
from tokens.login_message import login_message

CLIENTS = 8
SERVER_THREADS = 8
PHASE_TIME_LIMIT = 30.0  # seconds; a phase stops early rather than run on
DATA_KEY = base64.b64encode(os.urandom(32)).decode()
REPOSITORY = Path(__file__).resolve().parent.parent
TOKEN_PATH = "/api/v1/login/token"
FLOOR_PATH = "/bench/login-floor"  # bench/login_floor.py
KEYS: tuple[tuple[KeyKind, str, str], ...] = (
    ("rsa2048", "rsa", "RSA-2048"),
    ("p256", "p256", "P-256"),
)


@dataclass
class Phase:
    name: str
    operations: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_cpu: float = 0.0  # seconds of CPU the server process used during the phase

    @property
    def rate(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_per_operation(self) -> float:
        return self.server_cpu / self.operations if self.operations else 0.0

    def joined(self, other: Phase) -> Phase:
        """This phase and ``other`` counted as one."""
        return Phase(
            self.name,
            self.operations + other.operations,
            self.seconds + other.seconds,
            self.latencies + other.latencies,
            self.errors + other.errors,
            self.server_cpu + other.server_cpu,
        )

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Client:
    """One keep-alive connection with its own pre-login cookie."""

    def __init__(self, port: int, origin: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.origin = origin
        self.prelogin = ""

    def request(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        headers = {"Origin": self.origin}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.prelogin:
            headers["Cookie"] = f"certgate_prelogin={self.prelogin}"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        for cookie in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            if name == "certgate_prelogin":
                self.prelogin = rest.split(";", 1)[0]
        return response.status, json.loads(payload)

    def bare(self) -> None:
        status, body = self.request("GET", "/api/v1/session")
        if status != 401 or body.get("error") != "credentials_invalid":
            raise RuntimeError(f"bare request: {status} {body}")

    def login(self, issued: IssuedCertificate, path: str = TOKEN_PATH) -> None:
        status, challenge = self.request("POST", "/api/v1/login/challenge", {})
        if status != 200:
            raise RuntimeError(f"challenge: {status} {challenge}")
        message = login_message(self.origin, challenge["challenge_id"], challenge["nonce"])
        key = issued.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            signature, algorithm = (
                key.sign(message, padding.PKCS1v15(), hashes.SHA256()),
                ("rsa-pkcs1-sha256"),
            )
        else:
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            signature, algorithm = key.sign(message, ec.ECDSA(hashes.SHA256())), "ecdsa-sha256"
        der = issued.certificate.public_bytes(serialization.Encoding.DER)
        status, answer = self.request(
            "POST",
            path,
            {
                "challenge_id": challenge["challenge_id"],
                "certificate": base64.b64encode(der).decode(),
                "signature": base64.b64encode(signature).decode(),
                "signature_algorithm": algorithm,
            },
        )
        if status != 200 or not answer.get("ok"):
            raise RuntimeError(f"login: {status} {answer}")

    def close(self) -> None:
        self.connection.close()


def server_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``; 0 elsewhere).

    The clients share the machine with the server, so requests per second also measure the
    clients (and anything else running). The server's own CPU per operation does not, and is
    the steadier comparison of what a login costs the gateway against a bare request."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields after the command name; [0] is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(
    name: str,
    clients: list[Client],
    operation: Callable[[int, Client], None],
    count: int,
    *,
    server_pid: int | None = None,
) -> Phase:
    """``count`` operations per client, all clients at once; stops at ``PHASE_TIME_LIMIT``."""
    phase = Phase(name)
    lock = threading.Lock()
    start_gate = threading.Barrier(len(clients) + 1)
    deadline = [0.0]

    def worker(index: int, client: Client) -> None:
        latencies: list[float] = []
        start_gate.wait()
        try:
            for _ in range(count):
                if time.perf_counter() > deadline[0]:
                    break
                started = time.perf_counter()
                operation(index, client)
                latencies.append(time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
            with lock:
                phase.errors.append(str(exc)[:200])
        with lock:
            phase.latencies.extend(latencies)
            phase.operations += len(latencies)

    threads = [
        threading.Thread(target=worker, args=(n, c), daemon=True) for n, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    cpu_before = server_cpu_seconds(server_pid)
    began = time.perf_counter()
    deadline[0] = began + PHASE_TIME_LIMIT
    start_gate.wait()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - began
    phase.server_cpu = server_cpu_seconds(server_pid) - cpu_before
    return phase


def _write_config(directory: Path, pki: TestPki, port: int) -> None:
    anchors = [pki.ca_certificate_path(ca) for ca in ("root", "rsa", "p256")]
    crls = ", ".join(f'"{pki.crl_path(ca)}"' for ca in ("rsa", "p256", "root"))
    (directory / "certgate.toml").write_text(
        f"""\
public_origin = "http://127.0.0.1:{port}"
database_url = "sqlite:///{directory / "certgate.sqlite3"}"
# Raised for the benchmark: all clients share 127.0.0.1 (see bench/bench_login.py).
address_attempt_limit = 1000000
account_attempt_limit = 1000000
challenge_limit = 1000000

[[trust.anchors]]
name = "CertGate Test Root"
certificate = "{anchors[0]}"
intermediates = ["{anchors[1]}", "{anchors[2]}"]
revocation = "hard-fail"
crl = [{crls}]
""",
        encoding="utf-8",
    )


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTGATE_")}
    env["CERTGATE_DATA_KEY"] = DATA_KEY
    return env


def _create_accounts(directory: Path, certificates: list[tuple[str, IssuedCertificate]]) -> None:
    from gateway import create_app
    from gateway.accounts import get_accounts
    from gateway.clock import EXTENSION as CLOCK

    app = create_app(
        {"CONFIG_FILE": str(directory / "certgate.toml"), "DATA_KEY": DATA_KEY}, operator=True
    )
    accounts = get_accounts(app)
    for uscc, _issued in certificates:
        accounts.create_enterprise(
            unified_social_credit_code=uscc, name="基准测试有限公司", at=app.extensions[CLOCK].now()
        )
    app.extensions["certgate.database"].close()


def _start_server(directory: Path, port: int) -> subprocess.Popen[bytes]:
    environment = _environment()
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, (str(REPOSITORY), environment.get("PYTHONPATH")))
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.login_floor", "--port", str(port)]
        + ["--threads", str(SERVER_THREADS)],
        cwd=directory,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_until_serving(process, port)


def wait_until_serving(process: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    """``process`` once its gateway answers on ``port`` (at most a minute), else an error."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/api/v1/session")
            connection.getresponse().read()
            connection.close()
            return process
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the gateway did not answer")


def _logging_in(
    certificates: list[tuple[str, IssuedCertificate]], path: str = TOKEN_PATH
) -> Callable[[int, Client], None]:
    """Client n logs in with certificate n (at the login floor's route, given its path)."""

    def operation(index: int, client: Client) -> None:
        client.login(certificates[index][1], path)

    return operation


@dataclass(frozen=True)
class Result:
    bare: Phase
    logins: dict[str, Phase]
    floors: dict[str, Phase]  # the same logins at bench/login_floor.py's route


def run(*, logins: int = 100, bare: int = 400) -> Result:
    directory = Path(tempfile.mkdtemp(prefix="certgate-bench-login-"))
    process = None
    try:
        pki = TestPki.create(
            directory / "pki", crl_port=free_port(), ocsp_port=free_port_block(len(CA_NAMES))
        )
        certificates: dict[str, list[tuple[str, IssuedCertificate]]] = {}
        for key, ca, label in KEYS:
            certificates[label] = []
            for _ in range(CLIENTS):
                uscc = random_uscc()
                issued = pki.issue("enterprise", "基准测试有限公司", uscc=uscc, key=key, ca=ca)
                certificates[label].append((uscc, issued))
        port = free_port()
        _write_config(directory, pki, port)
        _create_accounts(directory, [item for items in certificates.values() for item in items])
        process = _start_server(directory, port)
        origin = f"http://127.0.0.1:{port}"
        clients = [Client(port, origin) for _ in range(CLIENTS)]
        try:
            # Warm-up: connections, the verifier's first call, SQLite pages.
            for label in certificates:
                run_phase("warm-up", clients, _logging_in(certificates[label]), 5)
                run_phase("warm-up", clients, _logging_in(certificates[label], FLOOR_PATH), 5)
            run_phase("warm-up", clients, lambda _n, c: c.bare(), 20)
            pid = process.pid
            # Bare requests before and after the logins, counted together: the machine's speed
            # drifts during a run, and one bare phase ahead of the logins skewed the ratio.
            before = run_phase("bare", clients, lambda _n, c: c.bare(), bare // 2, server_pid=pid)
            login_phases: dict[str, Phase] = {}
            floor_phases: dict[str, Phase] = {}
            for label in certificates:
                login_phases[label] = run_phase(
                    label, clients, _logging_in(certificates[label]), logins, server_pid=pid
                )
                floor_phases[label] = run_phase(
                    label,
                    clients,
                    _logging_in(certificates[label], FLOOR_PATH),
                    logins,
                    server_pid=pid,
                )
            after = run_phase("bare", clients, lambda _n, c: c.bare(), bare // 2, server_pid=pid)
            bare_phase = before.joined(after)
        finally:
            for client in clients:
                client.close()
        return Result(bare_phase, login_phases, floor_phases)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def print_result(result: Result) -> None:
    print(
        f"\nGateway logins: {CLIENTS} concurrent clients, the gateway as certgate serve runs "
        f"it (waitress, {SERVER_THREADS} threads), SQLite, loopback"
    )
    labelled = [("bare GET /api/v1/session", result.bare, "")]
    for label, phase in result.logins.items():
        labelled.append((f"login, {label}", phase, " (goal ≤ 4)"))
        labelled.append((f"login floor, {label}", result.floors[label], ""))
    print_phases("bare requests/login", result.bare, labelled)


def print_phases(per: str, bare: Phase, labelled: list[tuple[str, Phase, str]]) -> None:
    """One table of (name, phase, goal) rows, each beside the bare request of the same run: in
    bare requests per operation (by throughput and by the server's own CPU time)."""
    header = (
        "measurement",
        "count",
        "per second",
        "p50 ms",
        "p99 ms",
        per,
        "server CPU ms/op",
        "by server CPU",
    )
    rows = []
    for name, phase, goal in labelled:
        is_bare = phase is bare
        ratio = "" if is_bare or not phase.rate else f"{bare.rate / phase.rate:.2f}{goal}"
        bare_cpu = bare.server_cpu_per_operation
        cpu_ratio = (
            "" if is_bare or not bare_cpu else f"{phase.server_cpu_per_operation / bare_cpu:.2f}"
        )
        rows.append(
            (
                name,
                f"{phase.operations:,}",
                f"{phase.rate:,.1f}",
                f"{phase.percentile(0.50) * 1000:.2f}",
                f"{phase.percentile(0.99) * 1000:.2f}",
                ratio,
                f"{phase.server_cpu_per_operation * 1000:.2f}",
                cpu_ratio,
            )
        )
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
    for name, phase, _goal in labelled:
        for error in sorted(set(phase.errors)):
            print(f"  error in {name}: {error}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--logins", type=int, default=100, help="logins per client per key type")
    parser.add_argument("--bare", type=int, default=400, help="bare requests per client")
    arguments = parser.parse_args(argv if argv is not None else [])
    print_result(run(logins=arguments.logins, bare=arguments.bare))


if __name__ == "__main__":
    main(sys.argv[1:])
