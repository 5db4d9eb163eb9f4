"""Revocation I/O against servers that misbehave in every way, on loopback, started here.

Each server fails one way: it drips one byte a second, answers something that is not HTTP,
sends a fast body that never ends, accepts and never answers, or resets the connection. For CRL
distribution points and for OCSP, in hard-fail and soft-fail, the verdict must be
``revocation_unavailable`` (hard-fail) or valid with a warning (soft-fail), and the validation
must return within the fetch deadline plus a small margin — one deadline for the whole exchange,
however the server spends it.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from certs.errors import RevocationUnavailable
from certs.fetch import CRL_MAX_BYTES, OCSP_MAX_RESPONSE_BYTES, FetchError, HttpFetcher
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlStore
from certs.revocation.ocsp import OcspClient
from certs.validation import ChainValidator
from tests.certs.chains import AT, Issued, make_ca, make_crl, make_leaf

DEADLINE = 1.0  # seconds, for each CRL or OCSP fetch in these tests
MARGIN = 0.75  # what validation may take beyond the deadline on a busy 2-core machine

Handler = Callable[[socket.socket, threading.Event], None]


def _read_request(connection: socket.socket) -> None:
    """Read until the end of the request headers (the body, if any, is left unread)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return
        data += chunk


def slow_drip(connection: socket.socket, stop: threading.Event) -> None:
    """A valid HTTP answer, one byte a second."""
    _read_request(connection)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"0" * 1000
    for byte in answer:
        if stop.wait(1.0):
            return
        connection.sendall(bytes([byte]))


def not_http(connection: socket.socket, stop: threading.Event) -> None:
    """Something else listening on the port: an SSH banner and binary noise."""
    _read_request(connection)
    connection.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n\x00\xff\x13garbage\x00" * 4)


def endless_body(connection: socket.socket, stop: threading.Event) -> None:
    """HTTP 200 without a length, then bytes as fast as the client takes them, for ever."""
    _read_request(connection)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\n\r\n")
    block = b"\x30" * 65536
    while not stop.is_set():
        connection.sendall(block)


def never_answers(connection: socket.socket, stop: threading.Event) -> None:
    """Accepts the connection, reads the request, says nothing."""
    _read_request(connection)
    stop.wait(30)


def reset(connection: socket.socket, stop: threading.Event) -> None:
    """Reads the request, then resets the connection (RST, not FIN)."""
    _read_request(connection)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


SERVERS: dict[str, Handler] = {
    "slow-drip": slow_drip,
    "not-http": not_http,
    "endless-body": endless_body,
    "never-answers": never_answers,
    "reset": reset,
}
# Servers whose failure only the deadline ends: the verdict takes the whole deadline.
WAITS_FOR_DEADLINE = frozenset({"slow-drip", "never-answers"})


class MisbehavingServer:
    """A TCP server on 127.0.0.1 that treats every connection with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        self.listener.settimeout(0.05)  # so that close() is noticed at once
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                self.handler(connection, self.stop)
            except OSError:
                pass  # the client gave up: that is the point

    def close(self) -> None:
        self.stop.set()
        self._accepting.join(5)
        self.listener.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, MisbehavingServer]]:
    running = MisbehavingServer(SERVERS[request.param])
    yield request.param, running
    running.close()


@dataclass(frozen=True)
class FaultChain:
    """root -> intermediate -> leaf; the intermediate's status comes from a good root CRL, the
    leaf's only from the misbehaving server (its CRL distribution point or its OCSP URL)."""

    root: Issued
    intermediate: Issued
    leaf: Issued
    root_crl: bytes


def fault_chain(*, crl_url: str | None = None, ocsp_url: str | None = None) -> FaultChain:
    root = make_ca("Revocation IO Root", kind="p256")
    intermediate = make_ca("Revocation IO CA", issuer=root, kind="p256")
    leaf = make_leaf(
        "Revocation IO Leaf", intermediate, serial=4242, crl_url=crl_url, ocsp_url=ocsp_url
    )
    return FaultChain(root, intermediate, leaf, make_crl(root))


def validator(chain: FaultChain, mode: RevocationMode) -> ChainValidator:
    crls = CrlStore(
        fetcher=HttpFetcher(max_bytes=CRL_MAX_BYTES),
        fetch_timeout=DEADLINE,
        issuers=[chain.root.certificate],
    )
    crls.add(chain.root_crl, source="root.crl")
    checker = RevocationChecker(crls=crls, ocsp=OcspClient.for_http(timeout=DEADLINE))
    anchor = TrustAnchor(chain.root.certificate, ValidationPolicy(revocation=mode), name="root")
    return ChainValidator([anchor], revocation=checker)


def timed(function: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    try:
        outcome: object = function()
    except Exception as exc:  # noqa: BLE001 - the outcome is compared below
        outcome = exc
    return outcome, time.monotonic() - start


def assert_within_deadline(kind: str, elapsed: float, fetches: int = 1) -> None:
    assert elapsed < fetches * DEADLINE + MARGIN, f"{kind}: {elapsed:.2f} s"
    if kind in WAITS_FOR_DEADLINE:
        assert elapsed >= DEADLINE * 0.9, f"{kind}: {elapsed:.2f} s (gave up before the deadline)"


SOURCES = ("crl-distribution-point", "ocsp")


def _chain_for(source: str, server: MisbehavingServer) -> FaultChain:
    if source == "ocsp":
        return fault_chain(ocsp_url=server.url("/ocsp"))
    return fault_chain(crl_url=server.url("/issuing.crl"))


@pytest.mark.parametrize("source", SOURCES)
def test_hard_fail_refuses_within_the_deadline(
    server: tuple[str, MisbehavingServer], source: str
) -> None:
    kind, running = server
    chain = _chain_for(source, running)
    outcome, elapsed = timed(
        lambda: validator(chain, RevocationMode.HARD_FAIL).validate(
            chain.leaf.certificate, [chain.intermediate.certificate], at=AT
        )
    )
    assert isinstance(outcome, RevocationUnavailable), outcome
    assert running.connections >= 1
    assert_within_deadline(kind, elapsed)


@pytest.mark.parametrize("source", SOURCES)
def test_soft_fail_accepts_with_a_warning_within_the_deadline(
    server: tuple[str, MisbehavingServer], source: str
) -> None:
    kind, running = server
    chain = _chain_for(source, running)
    outcome, elapsed = timed(
        lambda: validator(chain, RevocationMode.SOFT_FAIL).validate(
            chain.leaf.certificate, [chain.intermediate.certificate], at=AT
        )
    )
    assert not isinstance(outcome, Exception), outcome
    warnings = outcome.warnings  # type: ignore[attr-defined]
    assert any("revocation unavailable" in w and "Revocation IO Leaf" in w for w in warnings)
    assert_within_deadline(kind, elapsed)


def test_a_fetch_has_one_deadline_not_one_per_read(server: tuple[str, MisbehavingServer]) -> None:
    """The fetcher itself: every misbehaviour is a FetchError, within the deadline."""
    kind, running = server
    fetcher = HttpFetcher(max_bytes=OCSP_MAX_RESPONSE_BYTES)
    for call in (
        lambda: fetcher.get(running.url("/x.crl"), timeout=DEADLINE),
        lambda: fetcher.post(
            running.url(), b"\x30\x00", content_type="application/ocsp-request", timeout=DEADLINE
        ),
    ):
        outcome, elapsed = timed(call)
        assert isinstance(outcome, FetchError), outcome
        assert_within_deadline(kind, elapsed)


def test_an_endless_body_is_cut_at_the_size_limit() -> None:
    running = MisbehavingServer(endless_body)
    try:
        fetcher = HttpFetcher(max_bytes=256 * 1024)
        outcome, elapsed = timed(lambda: fetcher.get(running.url("/big.crl"), timeout=30))
    finally:
        running.close()
    assert isinstance(outcome, FetchError)
    assert "larger than 262144 bytes" in str(outcome)
    assert elapsed < 5


def test_a_declared_length_over_the_limit_is_refused_before_the_body() -> None:
    def announces_too_much(connection: socket.socket, stop: threading.Event) -> None:
        _read_request(connection)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n")
        stop.wait(30)

    running = MisbehavingServer(announces_too_much)
    try:
        outcome, elapsed = timed(
            lambda: HttpFetcher(max_bytes=1024).get(running.url(), timeout=DEADLINE)
        )
    finally:
        running.close()
    assert isinstance(outcome, FetchError) and "larger than 1024 bytes" in str(outcome)
    assert elapsed < DEADLINE / 2


def test_well_behaved_servers_still_work() -> None:
    """Content-Length, chunked and close-delimited bodies, and a redirect, are all read."""
    chain = fault_chain()
    crl = make_crl(chain.intermediate)
    answers = {
        b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(crl) + crl,
        b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(
            b"%x\r\n" % len(crl[i : i + 100]) + crl[i : i + 100] + b"\r\n"
            for i in range(0, len(crl), 100)
        )
        + b"0\r\n\r\n",
        b"/close": b"HTTP/1.0 200 OK\r\n\r\n" + crl,
        b"/moved": b"HTTP/1.1 302 Found\r\nLocation: /length\r\nContent-Length: 0\r\n\r\n",
        b"/missing": b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    }

    def serve(connection: socket.socket, stop: threading.Event) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(4096)
        path = data.split(b" ", 2)[1]
        connection.sendall(answers[path])

    running = MisbehavingServer(serve)
    try:
        fetcher = HttpFetcher()
        for path in ("/length", "/chunked", "/close", "/moved"):
            assert fetcher.get(running.url(path), timeout=DEADLINE) == crl, path
        with pytest.raises(FetchError, match="HTTP 404"):
            fetcher.get(running.url("/missing"), timeout=DEADLINE)
    finally:
        running.close()
