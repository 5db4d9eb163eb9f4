"""Scale-out: certificate logins per second with one and two gateway processes on PostgreSQL and
Redis (``state_store = "redis"``, ``certgate serve --workers N``), p50/p99 at 8 clients, and the
same load on the embedded default (SQLite, in-process state, one process) for comparison.

The bench starts its own throw-away PostgreSQL and Redis (tests/fixtures_databases.py) and a
test PKI; 8 clients log in with P-256 certificates (challenge, signature, session) over
keep-alive connections, all on this machine. The goal: two processes give at least 1.8 times
one process's logins per second, and p99 stays under 50 ms. The machine's core count bounds the
first: on two cores the clients and the databases compete with the gateways for them, which the
table shows beside the figures.

Beside each phase's rate the bench prints where the CPU went, in milliseconds per login, from
the processes' own counters (``/proc/<pid>/stat``, user + system, a process tree with its
reaped children): the bench process (the clients: HTTP and signing), the gateway (with
``--workers``, the parent and its workers), every PostgreSQL process and redis-server. From
those it derives the ceiling this machine puts on the phase: with C the CPU per login of all
parties and g the gateway's, the cores allow at most ``cores / C`` logins per second, and N
gateway processes, each held to one core by the GIL, at most ``N / g``. CPU per login does not
move with other load on the machine the way logins per second do; that load is printed beside
it (cores busy with anything else during the phase, from ``/proc/stat``).

The one-process and two-process phases alternate, in ROUNDS rounds of a third of the logins
each (the gateway started afresh each time), and each deployment's figures are those of its
rounds together: run one after the other, a change in the machine's speed between the two (a
shared machine's CPU time per login moved by half within a minute here) went wholly into their
ratio. Each round's ratio is printed beside it.

It also counts, in a run of the gateway inside the bench process (Flask's test client, one
login at a time, on the same PostgreSQL and Redis), the round trips of one login: statements
(with the pool's connection checks), BEGIN and COMMIT to PostgreSQL, and commands (a pipeline
or a script is one) to Redis.

    python -m bench.bench_scale [--logins 150]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_login import (
    CLIENTS,
    DATA_KEY,
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
COUNTED_LOGINS = 50  # the in-process run that counts round trips
ROUNDS = 3  # alternations of the one- and two-process phases
PARTIES = ("clients", "gateway", "PostgreSQL", "Redis")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its children it has reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # [0] is field 3 (state), [1] the parent pid
    # utime, stime, cutime, cstime: a reaped child's time moves to its parent's c-fields, so a
    # tree's sum stays whole when a worker or a PostgreSQL backend ends between two readings.
    ticks = sum(int(value) for value in fields[11:15])
    return int(fields[1]), ticks / CLOCK_TICKS


def tree_cpu_seconds(root: int | None) -> float:
    """CPU seconds so far of process ``root`` and every descendant (Linux ``/proc``)."""
    if root is None:
        return 0.0
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            stats[int(entry)] = found
    children: dict[int, list[int]] = {}
    for pid, (parent, _cpu) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        if pid in stats:
            total += stats[pid][1]
        pending.extend(children.get(pid, ()))
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy so far (``/proc/stat``: all but idle and iowait)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(value) for value in fields]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS


def _postmaster(postgres: PostgresServer) -> int | None:
    try:
        return int((postgres.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Measured:
    phase: Phase
    workers: int
    cpu: dict[str, float] = field(default_factory=dict)  # party: CPU seconds in the phase
    machine_busy: float = 0.0  # CPU seconds the whole machine was busy during the phase
    redis_commands: dict[str, int] = field(default_factory=dict)  # commandstats difference

    def joined(self, other: Measured) -> Measured:
        """This phase and ``other`` (the same deployment, another round) counted as one."""
        return Measured(
            self.phase.joined(other.phase),
            self.workers,
            {party: self.cpu.get(party, 0.0) + other.cpu.get(party, 0.0) for party in PARTIES},
            self.machine_busy + other.machine_busy,
            {
                name: self.redis_commands.get(name, 0) + other.redis_commands.get(name, 0)
                for name in self.redis_commands.keys() | other.redis_commands.keys()
            },
        )

    def per_login(self, party: str) -> float:
        return self.cpu.get(party, 0.0) / self.phase.operations if self.phase.operations else 0.0

    @property
    def total_per_login(self) -> float:
        return sum(self.per_login(party) for party in PARTIES)

    @property
    def others_cores(self) -> float:
        """Cores busy with anything but the bench's parties, on average over the phase."""
        if not self.phase.seconds:
            return 0.0
        ours = sum(self.cpu.get(party, 0.0) for party in PARTIES)
        return max(0.0, self.machine_busy - ours) / self.phase.seconds

    def ceiling(self, cores: int) -> float:
        """Logins/s the measured CPU shares allow: all parties on ``cores``, and each gateway
        process on at most one core."""
        total, gateway = self.total_per_login, self.per_login("gateway")
        if not total or not gateway:
            return 0.0
        return min(cores / total, self.workers / gateway)


def _redis_commandstats(url: str | None) -> dict[str, int]:
    if url is None:
        return {}
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


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
    *,
    postmaster: int | None = None,
    redis_server: RedisServer | None = None,
) -> Measured:
    process = _serve(directory, port, workers, env)
    clients = [Client(port, f"http://127.0.0.1:{port}") for _ in range(CLIENTS)]
    redis_pid = None
    if redis_server is not None and redis_server.process is not None:
        redis_pid = redis_server.process.pid
    redis_url = redis_server.url if redis_server is not None else None

    def readings() -> dict[str, float]:
        return {
            "clients": time.process_time(),  # this process: the client threads
            "gateway": tree_cpu_seconds(process.pid),
            "PostgreSQL": tree_cpu_seconds(postmaster),
            "Redis": tree_cpu_seconds(redis_pid),
            "machine": machine_busy_seconds(),
        }

    try:
        run_phase("warm-up", clients, _logging_in(certificates), 10)
        commands_before = _redis_commandstats(redis_url)
        before = readings()
        phase = run_phase(f"{workers}", clients, _logging_in(certificates), logins)
        after = readings()
        commands_after = _redis_commandstats(redis_url)
        commands = {
            name: calls - commands_before.get(name, 0)
            for name, calls in commands_after.items()
            if name != "info" and calls > commands_before.get(name, 0)
        }
        cpu = {party: after[party] - before[party] for party in PARTIES}
        busy = after["machine"] - before["machine"]
        return Measured(phase, workers, cpu, busy, commands)
    finally:
        for client in clients:
            client.close()
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class RoundTrips:
    """Per login, counted in the in-process run."""

    statements: float  # SQL statements, the pool's connection checks included
    transactions: float  # BEGIN + COMMIT or ROLLBACK pairs (two round trips each)
    checkouts: float  # connections taken from the pool
    redis: float  # Redis round trips (a pipeline or a script is one)

    @property
    def postgresql(self) -> float:
        return self.statements + 2 * self.transactions


@contextmanager
def _counting_round_trips() -> Iterator[dict[str, int]]:
    """Counts what this process sends to PostgreSQL (psycopg) and Redis (redis-py) meanwhile:
    every cursor execute (SQLAlchemy's statements and its pool's checks), every COMMIT or
    ROLLBACK of an open transaction (psycopg opens each with a BEGIN of its own), and every
    packed command written to a Redis connection (a pipeline is one)."""
    import psycopg
    import redis.connection
    from psycopg.pq import TransactionStatus

    counts = {"statements": 0, "transactions": 0, "redis": 0}
    patched: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, replacement: Any) -> None:
        patched.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    execute = psycopg.Cursor.execute
    commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback
    send = redis.connection.AbstractConnection.send_packed_command
    open_states = (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["statements"] += 1
        return execute(self, *args, **kwargs)

    def ending(original: Any) -> Any:
        def end(self: Any) -> None:
            if self.info.transaction_status in open_states:
                counts["transactions"] += 1
            original(self)

        return end

    def counted_send(self: Any, *args: Any, **kwargs: Any) -> None:
        counts["redis"] += 1
        send(self, *args, **kwargs)

    patch(psycopg.Cursor, "execute", counted_execute)
    patch(psycopg.Connection, "commit", ending(commit))
    patch(psycopg.Connection, "rollback", ending(rollback))
    patch(redis.connection.AbstractConnection, "send_packed_command", counted_send)
    try:
        yield counts
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def count_round_trips(
    directory: Path, redis_url: str, certificate: IssuedCertificate, logins: int
) -> RoundTrips:
    """One login's round trips to PostgreSQL and Redis, the gateway running in this process."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from sqlalchemy import event

    from gateway import create_app
    from tokens.login_message import login_message

    app = create_app(
        {
            "CONFIG_FILE": str(directory / "certgate.toml"),
            "DATA_KEY": DATA_KEY,
            "STATE_STORE": "redis",
            "REDIS_URL": redis_url,
        }
    )
    database = app.extensions["certgate.database"]
    checkouts = [0]

    def checked_out(*_args: Any) -> None:
        checkouts[0] += 1

    event.listen(database.engine, "checkout", checked_out)
    origin = app.config["PUBLIC_ORIGIN"]
    client = app.test_client()
    der = base64.b64encode(certificate.certificate.public_bytes(serialization.Encoding.DER))
    key = certificate.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)

    def login() -> None:
        headers = {"Origin": origin}
        challenge = client.post("/api/v1/login/challenge", json={}, headers=headers).get_json()
        message = login_message(origin, challenge["challenge_id"], challenge["nonce"])
        body = {
            "challenge_id": challenge["challenge_id"],
            "certificate": der.decode(),
            "signature": base64.b64encode(key.sign(message, ec.ECDSA(hashes.SHA256()))).decode(),
            "signature_algorithm": "ecdsa-sha256",
        }
        answer = client.post("/api/v1/login/token", json=body, headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"login: {answer.status_code} {answer.get_json()}")
        # As the bench's clients: each login starts without a session cookie.
        client.delete_cookie(app.config["SESSION_COOKIE"])

    try:
        for _ in range(5):  # connections, scripts loaded, certificate details recorded
            login()
        checkouts[0] = 0
        with _counting_round_trips() as counts:
            for _ in range(logins):
                login()
    finally:
        database.close()
    return RoundTrips(
        counts["statements"] / logins,
        counts["transactions"] / logins,
        checkouts[0] / logins,
        counts["redis"] / logins,
    )


@dataclass
class Results:
    measured: dict[str, Measured] = field(default_factory=dict)
    round_trips: RoundTrips | None = None
    rounds: list[tuple[float, float]] = field(default_factory=list)  # (1 process, 2) logins/s


def run(*, logins: int = 150) -> Results:
    directory = Path(tempfile.mkdtemp(prefix="certgate-bench-scale-"))
    postgres = redis = None
    results = Results()
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
        results.measured["SQLite, in-process state, 1 process"] = _measure(
            embedded, port, 1, base_env, certificates, logins
        )

        shared = directory / "shared"
        shared.mkdir()
        _config(shared, pki, port, postgres.url)
        _create_accounts(shared, certificates)
        env = {**base_env, "CERTGATE_STATE_STORE": "redis", "CERTGATE_REDIS_URL": redis.url}
        per_round = max(1, logins // ROUNDS)
        for _round in range(ROUNDS):
            rates = []
            for workers in (1, 2):
                label = f"PostgreSQL + Redis, {workers} process{'es' if workers > 1 else ''}"
                measured = _measure(
                    shared,
                    port,
                    workers,
                    env,
                    certificates,
                    per_round,
                    postmaster=_postmaster(postgres),
                    redis_server=redis,
                )
                rates.append(measured.phase.rate)
                earlier = results.measured.get(label)
                results.measured[label] = measured if earlier is None else earlier.joined(measured)
            results.rounds.append((rates[0], rates[1]))
        results.round_trips = count_round_trips(
            shared, redis.url, certificates[0][1], COUNTED_LOGINS
        )
        return results
    finally:
        if redis is not None:
            redis.close()
        if postgres is not None:
            postgres.close()
        shutil.rmtree(directory, ignore_errors=True)


def print_result(results: Results) -> None:
    cores = os.cpu_count() or 1
    print(f"\nScale-out: P-256 certificate logins, {CLIENTS} clients, {cores} cores")
    print(
        f"{'deployment':<40} {'logins/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
        "   CPU ms per login: "
        + " ".join(f"{party:>10}" for party in PARTIES)
        + f" {'total':>7}   {'ceiling/s':>9} {'other load':>10}"
    )
    for label, measured in results.measured.items():
        phase = measured.phase
        print(
            f"{label:<40} {phase.rate:>9.1f} {phase.percentile(0.5) * 1000:>8.1f} "
            f"{phase.percentile(0.99) * 1000:>8.1f} {len(phase.errors):>7}"
            "                     "
            + " ".join(f"{measured.per_login(party) * 1000:>10.2f}" for party in PARTIES)
            + f" {measured.total_per_login * 1000:>7.2f}   {measured.ceiling(cores):>9.0f}"
            + f" {measured.others_cores:>5.2f} core"
        )
    print(
        f"ceiling/s: derived from the measured CPU shares, min({cores} cores / total CPU per "
        "login, gateway processes / gateway CPU per login); other load: cores busy with "
        "anything else on the machine meanwhile (/proc/stat), which the ceiling does not subtract"
    )
    one = results.measured.get("PostgreSQL + Redis, 1 process")
    two = results.measured.get("PostgreSQL + Redis, 2 processes")
    if one and two and one.phase.rate:
        each = ", ".join(
            f"{second / first:.2f}x ({first:.0f} and {second:.0f}/s)"
            for first, second in results.rounds
            if first
        )
        print(
            f"two processes / one, measured: {two.phase.rate / one.phase.rate:.2f}x "
            f"(goal >= 1.8x); in each round: {each}"
        )
        allowed = two.ceiling(cores) / one.phase.rate
        print(
            f"two processes / one, the most these cores allow (derived from the measured CPU "
            f"shares: two processes' ceiling / one process's measured rate): {allowed:.2f}x"
        )
        for name, measured in (("one process", one), ("two processes", two)):
            if measured.phase.operations:
                commands = ", ".join(
                    f"{command} {calls / measured.phase.operations:.1f}"
                    for command, calls in sorted(measured.redis_commands.items())
                )
                print(f"Redis commands per login, {name} (scripts' own calls included): {commands}")
    trips = results.round_trips
    if trips is not None:
        print(
            f"round trips per login (in-process run, {COUNTED_LOGINS} logins): PostgreSQL "
            f"{trips.postgresql:.1f} ({trips.statements:.1f} statements incl. connection checks, "
            f"{trips.transactions:.1f} BEGIN/COMMIT pairs, {trips.checkouts:.1f} pool checkouts), "
            f"Redis {trips.redis:.1f}"
        )
    for label, measured in results.measured.items():
        for error in measured.phase.errors[:3]:
            print(f"  error in {label}: {error}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--logins",
        type=int,
        default=150,
        help="logins per client per deployment (split over the rounds where they alternate)",
    )
    args = parser.parse_args(argv)
    print_result(run(logins=args.logins))


if __name__ == "__main__":
    main()
