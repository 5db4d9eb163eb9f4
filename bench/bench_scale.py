"""Scale-out: certificate logins per second with one and two gateway processes on PostgreSQL and
Redis (``state_store = "redis"``, ``certgate serve --workers N``), p50/p99 at 8 clients, and the
same load on the embedded default (SQLite, in-process state, one process) for comparison.

The bench starts its own throw-away PostgreSQL and Redis (tests/fixtures_databases.py) and a
test PKI; 8 clients log in with P-256 certificates (challenge, signature, session) over
keep-alive connections, all on this machine. The goal: two processes give at least 1.8 times
one process's logins per second, and p99 stays under 50 ms. The machine's core count bounds the
first: on two cores the clients and the databases compete with the gateways for them, which the
table shows beside the figures.

    python -m bench.bench_scale [--logins 150]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_login import (
    CLIENTS,
    REPOSITORY,
    Client,
    Phase,
    _create_accounts,
    _environment,
    _logging_in,
    run_phase,
)
from softhsm.pki import CA_NAMES, IssuedCertificate, TestPki, random_uscc
from tests.fixtures_databases import PostgresServer, RedisServer
from tests.fixtures_pki import free_port, free_port_block

CERTGATE = str(Path(sys.executable).parent / "certgate")
THREADS = 8


def _config(directory: Path, pki: TestPki, port: int, database_url: str) -> None:
    anchors = [pki.ca_certificate_path(ca) for ca in ("root", "rsa", "p256")]
    crls = ", ".join(f'"{pki.crl_path(ca)}"' for ca in ("rsa", "p256", "root"))
    (directory / "certgate.toml").write_text(
        f"""\
public_origin = "http://127.0.0.1:{port}"
database_url = "{database_url}"
# Raised for the benchmark: all clients share 127.0.0.1.
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


def _serve(
    directory: Path, port: int, workers: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    argv = [CERTGATE, "serve", "--port", str(port), "--threads", str(THREADS)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    process = subprocess.Popen(
        argv, cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    import http.client

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"certgate serve exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/readyz")
            ready = connection.getresponse()
            ready.read()
            connection.close()
            if ready.status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the gateway did not become ready")


def _measure(
    directory: Path,
    port: int,
    workers: int,
    env: dict[str, str],
    certificates: list[tuple[str, IssuedCertificate]],
    logins: int,
) -> Phase:
    process = _serve(directory, port, workers, env)
    clients = [Client(port, f"http://127.0.0.1:{port}") for _ in range(CLIENTS)]
    try:
        run_phase("warm-up", clients, _logging_in(certificates), 10)
        return run_phase(f"{workers}", clients, _logging_in(certificates), logins)
    finally:
        for client in clients:
            client.close()
        process.terminate()
        process.wait(timeout=30)


def run(*, logins: int = 150) -> dict[str, Phase]:
    directory = Path(tempfile.mkdtemp(prefix="certgate-bench-scale-"))
    postgres = redis = None
    results: dict[str, Phase] = {}
    try:
        pki = TestPki.create(
            directory / "pki", crl_port=free_port(), ocsp_port=free_port_block(len(CA_NAMES))
        )
        certificates = []
        for _ in range(CLIENTS):
            uscc = random_uscc()
            issued = pki.issue("enterprise", "基准测试有限公司", uscc=uscc, key="p256", ca="p256")
            certificates.append((uscc, issued))
        postgres = PostgresServer()
        redis = RedisServer(directory / "redis")
        port = free_port()
        base_env = _environment()
        base_env["PYTHONPATH"] = str(REPOSITORY)

        embedded = directory / "embedded"
        embedded.mkdir()
        _config(embedded, pki, port, f"sqlite:///{embedded / 'certgate.sqlite3'}")
        _create_accounts(embedded, certificates)
        results["SQLite, in-process state, 1 process"] = _measure(
            embedded, port, 1, base_env, certificates, logins
        )

        shared = directory / "shared"
        shared.mkdir()
        _config(shared, pki, port, postgres.url)
        _create_accounts(shared, certificates)
        env = {**base_env, "CERTGATE_STATE_STORE": "redis", "CERTGATE_REDIS_URL": redis.url}
        for workers in (1, 2):
            label = f"PostgreSQL + Redis, {workers} process{'es' if workers > 1 else ''}"
            results[label] = _measure(shared, port, workers, env, certificates, logins)
        return results
    finally:
        if redis is not None:
            redis.close()
        if postgres is not None:
            postgres.close()
        shutil.rmtree(directory, ignore_errors=True)


def print_result(results: dict[str, Phase]) -> None:
    print(f"\nScale-out: P-256 certificate logins, {CLIENTS} clients, {os.cpu_count()} cores")
    print(f"{'deployment':<40} {'logins/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, phase in results.items():
        print(
            f"{label:<40} {phase.rate:>9.1f} {phase.percentile(0.5) * 1000:>8.1f} "
            f"{phase.percentile(0.99) * 1000:>8.1f} {len(phase.errors):>7}"
        )
    one = results.get("PostgreSQL + Redis, 1 process")
    two = results.get("PostgreSQL + Redis, 2 processes")
    if one and two and one.rate:
        print(f"two processes / one: {two.rate / one.rate:.2f}x (goal >= 1.8x)")
    for phase in results.values():
        for error in phase.errors[:3]:
            print(f"  error: {error}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=150, help="logins per client per phase")
    args = parser.parse_args(argv)
    print_result(run(logins=args.logins))


if __name__ == "__main__":
    main()
