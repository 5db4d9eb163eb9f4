"""Two ``certgate serve`` processes on one PostgreSQL and one Redis, behind a real nginx that
sends requests to them in turn (round robin), as docs/scaling.md deploys them; and what happens
when Redis stops or PostgreSQL restarts under load.

Everything runs on the real clock (the test PKI's certificates and CRLs are fresh today), and
the gateways are real processes: nothing is shared between them except the two servers.
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, text

from gateway.commands.serve import STARTUP_WAIT
from softhsm.pki import CA_NAMES, IssuedCertificate, TestPki, random_id_card_number
from tests.fixtures_databases import PostgresServer, RedisServer, free_port
from tests.fixtures_pki import free_port_block
from tests.gateway.conftest import DATA_KEY
from tests.gateway.test_serve import CERTGATE, clean_environment

NGINX = "/usr/sbin/nginx"
PASSWORD = "Scale-out-2026!"
SERVICE = "https://app.example.cn/cas/"

NGINX_CONF = """\
{user}
daemon off;
master_process off;
pid {d}/nginx.pid;
lock_file {d}/nginx.lock;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$upstream_addr $status $request_uri';
    access_log {d}/access.log upstream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream certgate {{
        server 127.0.0.1:{first};
        server 127.0.0.1:{second};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://certgate;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen[bytes]


@dataclass
class Cluster:
    pki: TestPki
    postgres: PostgresServer
    redis: RedisServer
    directory: Path
    env: dict[str, str]
    origin: str  # nginx
    gateways: list[Gateway]
    person: IssuedCertificate
    id_number: str
    nginx_dir: Path
    cookies: dict[str, str] = field(default_factory=dict)

    def call(
        self,
        base: str,
        method: str,
        path: str,
        body: Any = None,
        cookies: dict[str, str] | None = None,
        timeout: float = 10,
        csrf: str | None = None,
    ) -> requests.Response:
        jar = cookies if cookies is not None else {}
        headers = {"Origin": self.origin}
        if csrf:
            headers["X-CSRF-Token"] = csrf
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        answer = requests.request(
            method,
            base + path,
            json=body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        )
        # Secure cookies over loopback http: kept by hand, as a browser does for localhost.
        for name, value in answer.cookies.items():
            jar[name] = value
        return answer

    def challenge_login(
        self, issue_at: str, answer_at: str, jar: dict[str, str]
    ) -> tuple[requests.Response, dict[str, Any]]:
        challenge = self.call(issue_at, "POST", "/api/v1/login/challenge", None, jar).json()
        return self.answer(challenge, answer_at, jar), challenge

    def answer(self, challenge: dict[str, Any], at: str, jar: dict[str, str]) -> requests.Response:
        message = (
            f"certgate-login-v1\n{self.origin}\n{challenge['challenge_id']}\n{challenge['nonce']}\n"
        ).encode()
        key = self.person.private_key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        body = {
            "challenge_id": challenge["challenge_id"],
            "certificate": b64(self.person.certificate.public_bytes(serialization.Encoding.DER)),
            "chain": [
                b64(c.public_bytes(serialization.Encoding.DER)) for c in self.person.chain[:-1]
            ],
            "signature": b64(key.sign(message, ec.ECDSA(hashes.SHA256()))),
            "signature_algorithm": "ecdsa-sha256",
        }
        return self.call(at, "POST", "/api/v1/login/token", body, jar)

    def count(self, table: str) -> int:
        engine = create_engine(self.postgres.url)
        try:
            with engine.connect() as connection:
                return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        finally:
            engine.dispose()

    def certgate(self, *argv: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [CERTGATE, *argv],
            cwd=self.directory,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # start-up, not a timing assertion
        if process.poll() is not None:
            pytest.fail(f"{url} exited with {process.returncode}")
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} not ready")


def start_gateway(directory: Path, env: dict[str, str], *extra: str) -> Gateway:
    port = free_port()
    # The log goes to a file: a pipe nobody reads would fill up under load and stop the server.
    with open(directory / f"serve-{port}.log", "wb") as log:
        process = subprocess.Popen(
            [CERTGATE, "serve", "--port", str(port), "--threads", "8", *extra],
            cwd=directory,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    gateway = Gateway(f"http://127.0.0.1:{port}", process)
    _wait_ready(gateway.url, process)
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    gateway.process.terminate()
    gateway.process.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, redis_server: RedisServer
) -> Iterator[Cluster]:
    if not os.access(NGINX, os.X_OK):
        pytest.skip("nginx is not installed (make test installs it)")
    base = tmp_path_factory.mktemp("scale-out")
    pki = TestPki.create(
        base / "pki", crl_port=free_port(), ocsp_port=free_port_block(len(CA_NAMES))
    )
    id_number = random_id_card_number()
    person = pki.issue("person", "郑十四", id_number=id_number, key="p256", ca="p256")
    directory = base / "gateway"
    directory.mkdir()
    nginx_dir = base / "nginx"
    nginx_dir.mkdir()
    nginx_port = free_port()
    origin = f"http://127.0.0.1:{nginx_port}"
    anchors = [pki.ca_certificate_path(ca) for ca in ("root", "rsa", "p256")]
    (directory / "certgate.toml").write_text(
        f"""\
public_origin = "{origin}"
trusted_proxies = ["127.0.0.1"]

[[trust.anchors]]
name = "CertGate Test Root"
certificate = "{anchors[0]}"
intermediates = ["{anchors[1]}", "{anchors[2]}"]
revocation = "hard-fail"
crl = [{", ".join(f'"{pki.crl_path(ca)}"' for ca in ("rsa", "p256", "root"))}]
""",
        encoding="utf-8",
    )
    env = clean_environment(
        CERTGATE_DATA_KEY=DATA_KEY,
        CERTGATE_DATABASE_URL=postgres.url,
        CERTGATE_STATE_STORE="redis",
        CERTGATE_REDIS_URL=redis_server.url,
        # The load below comes from one address: only the per-account limit is under test.
        CERTGATE_CHALLENGE_LIMIT="1000000",
        CERTGATE_ADDRESS_ATTEMPT_LIMIT="1000000",
    )
    made = Cluster(
        pki, postgres, redis_server, directory, env, origin, [], person, id_number, nginx_dir
    )
    made.certgate(
        "account", "create", "person", id_number, "--real-name", "郑十四", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    made.certgate("client", "add", "示例", "--protocol", "cas", "--service", SERVICE, "--json")
    made.gateways = [start_gateway(directory, env), start_gateway(directory, env)]
    first, second = (int(g.url.rsplit(":", 1)[1]) for g in made.gateways)
    (nginx_dir / "nginx.conf").write_text(
        NGINX_CONF.format(
            user="user root root;" if os.geteuid() == 0 else "",
            d=nginx_dir,
            port=nginx_port,
            first=first,
            second=second,
        )
    )
    nginx = subprocess.Popen(
        [NGINX, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(origin, nginx)  # type: ignore[arg-type]
        yield made
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        for gateway in made.gateways:
            stop_gateway(gateway)
        pki.stop_servers() if hasattr(pki, "stop_servers") else None


def test_a_login_through_nginx_spans_both_processes(cluster: Cluster) -> None:
    jar: dict[str, str] = {}
    answer, _challenge = cluster.challenge_login(cluster.origin, cluster.origin, jar)
    assert answer.status_code == 200, answer.text
    for _ in range(4):
        session = cluster.call(cluster.origin, "GET", "/api/v1/session", cookies=jar)
        assert session.status_code == 200 and session.json()["amr"], session.text
    # Round robin: the challenge, the login and the session checks met both processes.
    served_by = {
        line.split()[0]
        for line in (cluster.nginx_dir / "access.log").read_text().splitlines()
        if "/api/v1/" in line
    }
    assert served_by == {g.url.removeprefix("http://") for g in cluster.gateways}


def test_a_challenge_issued_by_one_is_answered_at_the_other_once(cluster: Cluster) -> None:
    one, other = (g.url for g in cluster.gateways)
    jar: dict[str, str] = {}
    answer, challenge = cluster.challenge_login(one, other, jar)
    assert answer.status_code == 200, answer.text
    for at in (one, other):
        replay = cluster.answer(challenge, at, dict(jar))
        assert replay.status_code == 401 and replay.json()["error"] == "challenge_used"
    # The session it made works on both.
    for at in (one, other):
        assert cluster.call(at, "GET", "/api/v1/session", cookies=jar).status_code == 200
    # Logging out at one ends it at the other.
    csrf = answer.json()["csrf_token"]
    assert cluster.call(one, "POST", "/api/v1/logout", None, jar, csrf=csrf).status_code == 200
    assert cluster.call(other, "GET", "/api/v1/session", cookies=jar).status_code == 401


def test_limits_count_across_both_processes(cluster: Cluster) -> None:
    one, other = (g.url for g in cluster.gateways)
    identifier = random_id_card_number()  # names no account: limited all the same
    codes = []
    for n in range(6):
        answer = cluster.call(
            (one, other)[n % 2],
            "POST",
            "/api/v1/login/password",
            {"identifier": identifier, "password": "wrong-password-1"},
        )
        codes.append(answer.json()["error"])
    # account_attempt_limit = 5 per window, counted once for both processes.
    assert codes == ["credentials_invalid"] * 5 + ["rate_limited"]


def test_cas_tickets_are_redeemable_at_either_once(cluster: Cluster) -> None:
    one, other = (g.url for g in cluster.gateways)
    jar: dict[str, str] = {}
    login = cluster.call(
        one,
        "POST",
        "/api/v1/login/password",
        {"identifier": cluster.id_number, "password": PASSWORD},
        jar,
    )
    assert login.status_code == 200, login.text
    for issue_at, validate_at in ((one, other), (other, one)):
        redirect = cluster.call(issue_at, "GET", f"/cas/login?service={quote(SERVICE)}", None, jar)
        assert redirect.status_code == 302, redirect.text
        ticket = parse_qs(urlsplit(redirect.headers["Location"]).query)["ticket"][0]
        path = f"/cas/p3/serviceValidate?service={quote(SERVICE)}&ticket={ticket}&format=JSON"
        valid = cluster.call(validate_at, "GET", path).json()["serviceResponse"]
        assert "authenticationSuccess" in valid, valid
        again = cluster.call(issue_at, "GET", path).json()["serviceResponse"]
        assert "authenticationFailure" in again  # single use across both


@contextmanager
def load(
    cluster: Cluster, path: str = "/api/v1/login/challenge"
) -> Iterator[list[tuple[float, int]]]:
    """Four clients asking both processes without pause; each answer's time and status."""
    answers: list[tuple[float, int]] = []
    stop = threading.Event()

    def client(n: int) -> None:
        base = cluster.gateways[n % 2].url
        while not stop.is_set():
            try:
                status = cluster.call(base, "POST", path, None, {}, timeout=5).status_code
            except requests.RequestException:
                status = 0
            answers.append((time.monotonic(), status))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_redis_stopped_under_load_answers_503_quickly_and_recovers(cluster: Cluster) -> None:
    with load(cluster) as answers:
        time.sleep(0.5)
        stopped_at = time.monotonic()
        cluster.redis.stop()
        time.sleep(1.5)
        refusals = [a for a in answers if a[0] > stopped_at + 1.0]
        cluster.redis.start()
        back_at = time.monotonic()
        time.sleep(1.5)
    assert refusals and {status for _, status in refusals} == {503}, [
        (round(m - stopped_at, 2), s) for m, s in answers[-40:]
    ]
    # Every answer after the first second is a 503; none took longer than a second.
    started = [a for a in answers if a[0] > stopped_at]
    assert started and all(status in (200, 503) for _, status in started)
    assert [status for moment, status in answers if moment > back_at + 1.0][-5:] == [200] * 5
    answer = cluster.call(cluster.gateways[0].url, "POST", "/api/v1/login/challenge")
    assert answer.status_code == 200
    ready = requests.get(cluster.gateways[1].url + "/readyz", timeout=5)
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_redis_down_is_reported_by_readyz(cluster: Cluster) -> None:
    cluster.redis.stop()
    try:
        started = time.monotonic()
        answer = requests.get(cluster.gateways[0].url + "/readyz", timeout=5)
        refused = cluster.call(cluster.gateways[1].url, "POST", "/api/v1/login/challenge")
        elapsed = time.monotonic() - started
    finally:
        cluster.redis.start()
    assert answer.status_code == 503 and answer.json()["checks"]["redis"] != "ok"
    assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
    assert elapsed < 2.0
    assert requests.get(cluster.gateways[0].url + "/healthz", timeout=5).status_code == 200


def test_postgresql_restarted_under_load_loses_nothing_committed(cluster: Cluster) -> None:
    before = {t: cluster.count(t) for t in ("accounts", "certificate_bindings")}
    records_before = cluster.count("audit_records")
    logins: list[int] = []
    stop = threading.Event()

    def log_in(n: int) -> None:
        base = cluster.gateways[n % 2].url
        while not stop.is_set():
            try:
                jar: dict[str, str] = {}
                answer, _ = cluster.challenge_login(base, base, jar)
                logins.append(answer.status_code)
            except (requests.RequestException, ValueError):
                logins.append(0)

    threads = [threading.Thread(target=log_in, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        cluster.postgres.restart()
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert 200 in logins and 503 in logins, logins
    assert set(logins) <= {200, 503}
    # Every login the clients saw succeed committed its audit record (with its session), and
    # the chain is whole; nothing committed went away.
    assert "audit trail intact" in cluster.certgate("audit", "verify")
    assert cluster.count("audit_records") - records_before >= logins.count(200)
    after = {t: cluster.count(t) for t in ("accounts", "certificate_bindings")}
    assert after == before
    recorded = cluster.count("audit_records")
    jar: dict[str, str] = {}
    for gateway in cluster.gateways:  # both recover without a restart
        answer, _ = cluster.challenge_login(gateway.url, gateway.url, jar)
        assert answer.status_code == 200, answer.text
    assert cluster.count("audit_records") == recorded + 2


def _metric(text_format: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text_format.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_workers_share_one_port_and_their_metrics_add_up(cluster: Cluster) -> None:
    served = start_gateway(cluster.directory, cluster.env, "--workers", "2")
    try:
        children = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children")
        assert len(children.read_text().split()) == 2
        identifier = random_id_card_number()
        for _ in range(3):
            answer = cluster.call(
                served.url,
                "POST",
                "/api/v1/login/password",
                {"identifier": identifier, "password": "wrong-password-1"},
            )
            assert answer.json()["error"] == "credentials_invalid"
        labels = {"method": "password", "outcome": "credentials_invalid"}
        for _ in range(4):  # whichever worker answers the scrape, the count is the server's
            scraped = requests.get(served.url + "/metrics", timeout=5).text
            assert _metric(scraped, "certgate_logins_total", **labels) == 3
        assert "certgate_request_duration_seconds_bucket" in scraped
        assert _metric(scraped, "certgate_logout_queue_depth") == 0
        assert 'certgate_crl_age_seconds{source="' in scraped
    finally:
        stop_gateway(served)


def _established_per_worker(parent: int, port: int) -> dict[int, int]:
    """How many established connections on ``port`` each worker of ``parent`` holds (from
    /proc: the workers' socket inodes against the kernel's TCP table)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes[fields[9]] = 0
    counts: dict[int, int] = {}
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for child in map(int, children):
        held = 0
        for fd in Path(f"/proc/{child}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[child] = held
    return counts


def _readyz_kept_open(port: int, answers: list[int]) -> http.client.HTTPConnection:
    """A keep-alive connection that asked ``/readyz`` (its status added to ``answers``), left
    open: it stays with the worker that accepted it."""
    deadline = time.monotonic() + 60
    while True:  # refused until the parent listens (after its configuration check)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.connect()
            break
        except ConnectionRefusedError:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    connection.request("GET", "/readyz")
    response = connection.getresponse()
    response.read()
    answers.append(response.status)
    return connection


@dataclass
class HeldStart:
    """``--workers 2`` started with its second worker held (SIGSTOP) as it builds its app, as
    a slow start would; ``held`` and ``answers`` as ``_readyz_kept_open`` fills them."""

    process: subprocess.Popen[bytes]
    port: int
    fast: int
    slow: int
    held: list[http.client.HTTPConnection] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    stopped: bool = True

    def open(self) -> None:
        self.held.append(_readyz_kept_open(self.port, self.answers))

    def release(self) -> None:
        os.kill(self.slow, signal.SIGCONT)
        self.stopped = False

    def per_worker(self) -> dict[int, int]:
        return _established_per_worker(self.process.pid, self.port)


@contextmanager
def _one_worker_held(cluster: Cluster) -> Iterator[HeldStart]:
    port = free_port()
    with open(cluster.directory / f"serve-{port}.log", "wb") as log:
        process = subprocess.Popen(
            [CERTGATE, "serve", "--port", str(port), "--threads", "8", "--workers", "2"],
            cwd=cluster.directory,
            env=cluster.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    start: HeldStart | None = None
    try:
        deadline = time.monotonic() + 30
        while len(children.read_text().split()) < 2:  # the fork follows the configuration check
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        fast, slow = (int(pid) for pid in children.read_text().split())
        os.kill(slow, signal.SIGSTOP)
        start = HeldStart(process, port, fast, slow)
        yield start
    finally:
        if start is not None:
            if start.stopped:
                start.release()
            for connection in start.held:
                connection.close()
        process.terminate()
        process.wait(timeout=20)


def test_the_first_connections_wait_for_a_slow_worker_and_are_shared_out(cluster: Cluster) -> None:
    """Eight keep-alive connections opened the moment ``--workers 2`` starts, while one worker
    is slow to start (held with SIGSTOP for 2 s), are 4 and 4 once it serves: the parent waits
    for every worker before it accepts, where the first worker ready would otherwise take them
    all and keep them (two processes then no faster than one)."""

    with _one_worker_held(cluster) as start:
        openers = [threading.Thread(target=start.open) for _ in range(8)]
        for opener in openers:
            opener.start()
        time.sleep(2)
        assert start.answers == []  # waiting in the backlog, for both workers
        start.release()
        for opener in openers:
            opener.join(timeout=60)
        assert start.answers == [200] * 8
        assert sorted(start.per_worker().values()) == [4, 4]


def test_connections_go_to_the_serving_workers_in_turn(cluster: Cluster) -> None:
    """``--workers 2`` hands connections out in turn to the workers that serve: while one is
    held (SIGSTOP) as it builds its app, as a slow start would, connections wait STARTUP_WAIT
    for it, then the other answers them all; once both serve, keep-alive connections alternate
    between them, 4 and 4 of 8, where the kernel's own spreading could put all 8 on one."""

    with _one_worker_held(cluster) as start:
        fast, slow = start.fast, start.slow
        asked = time.monotonic()
        start.open()
        waited = time.monotonic() - asked
        # The fast worker serves within a few seconds; the first answer comes STARTUP_WAIT
        # after that, not before.
        assert STARTUP_WAIT <= waited < STARTUP_WAIT + 30
        for _ in range(7):
            start.open()
        assert start.answers == [200] * 8
        assert start.per_worker() == {fast: 8, slow: 0}
        start.release()
        # Held past its database connect timeout (3 s), the slow worker may fail its start on
        # release and be started again, as any worker whose start fails is: the second worker
        # is whichever serves now.
        deadline = time.monotonic() + 60
        while len(counts := start.per_worker()) < 2 or 0 in counts.values():
            assert time.monotonic() < deadline, "the second worker never took a connection"
            start.open()  # answered meanwhile by the other
        before = start.per_worker()
        for _ in range(8):
            start.open()
        after = start.per_worker()
        assert fast in after and len(after) == 2
        assert [after[pid] - before.get(pid, 0) for pid in after] == [4, 4]
        assert set(start.answers) == {200}


def test_a_worker_that_dies_is_started_again_and_serves(cluster: Cluster) -> None:
    served = start_gateway(cluster.directory, cluster.env, "--workers", "2")
    port = int(served.url.rsplit(":", 1)[1])
    children = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children")
    held: list[http.client.HTTPConnection] = []
    try:
        first = [int(pid) for pid in children.read_text().split()]
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # replaced after a one-second pause and the new worker's start
            now = [int(pid) for pid in children.read_text().split()]
            if len(now) == 2 and first[0] not in now:
                break
            assert time.monotonic() < deadline, f"workers: {now}"
            time.sleep(0.05)
        replacement = next(pid for pid in now if pid != first[1])
        answers: list[int] = []
        deadline = time.monotonic() + 60
        while _established_per_worker(served.process.pid, port).get(replacement, 0) == 0:
            # The other worker answers meanwhile; the new one takes its turn once it serves.
            assert time.monotonic() < deadline, "the new worker took no connection"
            held.append(_readyz_kept_open(port, answers))
        assert set(answers) == {200}
    finally:
        for connection in held:
            connection.close()
        stop_gateway(served)


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited process not yet reaped is a zombie, "Z")."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_exit_when_their_parent_is_killed(cluster: Cluster) -> None:
    """No orphan keeps serving with no one to restart it or hand it connections."""
    served = start_gateway(cluster.directory, cluster.env, "--workers", "2")
    children = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children")
    workers = [int(pid) for pid in children.read_text().split()]
    served.process.kill()
    served.process.wait(timeout=10)
    deadline = time.monotonic() + 20
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its parent"
        time.sleep(0.05)
