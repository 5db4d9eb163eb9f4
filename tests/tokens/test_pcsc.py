"""PC/SC readers and card events with pcscd, vsmartcard's virtual reader (vpcd) and card (vicc).

``pcscd`` is used when it already runs, else started for the session (and stopped afterwards).
Debian's ``vicc`` needs its package directory on PYTHONPATH and a ``Crypto`` -> ``Cryptodome``
alias (docs/agent.md); the fixture builds both. Without pcscd, vpcd or vicc the tests are skipped
with the reason. Waits are event-driven, bounded only to fail instead of hanging.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tokens.conftest import ALLOWED_ORIGIN, AgentClient
from tokens.agent import AgentConfig, SigningAgent
from tokens.pcsc import CardChange, CardEvent, PcscUnavailable, PcscWatcher, list_readers
from tokens.pkcs11 import SOFTHSM_MODULE, TokenLibrary

VIRTUAL_READER = "Virtual PCD 00 00"
VPCD_CONFIG = Path("/etc/reader.conf.d/vpcd")
VICC_ATR = "3b951381018073ff01000b"
VICC_PACKAGE_DIRECTORIES = (
    "/usr/lib/python3/site-packages/virtualsmartcard",
    "/usr/lib/python3/site-packages",
)
CRYPTODOME = Path("/usr/lib/python3/dist-packages/Cryptodome")
# Upper bound for a daemon or card to come up; exceeded only when something is broken.
STARTUP_LIMIT_SECONDS = 30.0
EVENT_LIMIT_SECONDS = 30.0


def _readers() -> list[str] | None:
    try:
        return list_readers()
    except PcscUnavailable:
        return None


def _wait_until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen")


@pytest.fixture(scope="session")
def pcsc_daemon() -> Iterator[None]:
    started: subprocess.Popen[bytes] | None = None
    if _readers() is None:
        pcscd = shutil.which("pcscd") or (
            "/usr/sbin/pcscd" if Path("/usr/sbin/pcscd").exists() else None
        )
        if pcscd is None:
            pytest.skip("pcscd is not installed (apt-get install pcscd)")
        started = subprocess.Popen(
            [pcscd, "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_until(lambda: _readers() is not None or started.poll() is not None, "pcscd start")
        if started.poll() is not None:
            pytest.skip(f"pcscd exited with {started.returncode} (not root?)")
    if started is not None and VPCD_CONFIG.is_file():
        # pcscd loads reader drivers after it starts answering.
        _wait_until(lambda: VIRTUAL_READER in (_readers() or []), "the vpcd reader to appear")
    if VIRTUAL_READER not in (_readers() or []):
        if started is not None:
            started.terminate()
            started.wait()
        pytest.skip("no virtual reader: install vsmartcard-vpcd and (re)start pcscd")
    try:
        yield
    finally:
        if started is not None:
            started.terminate()
            started.wait()


@pytest.fixture(scope="session")
def vicc_environment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    vicc = shutil.which("vicc")
    if vicc is None:
        pytest.skip("vicc is not installed (apt-get install vsmartcard-vpicc)")
    if not CRYPTODOME.is_dir():
        pytest.skip("vicc needs python3-pycryptodome")
    alias = tmp_path_factory.mktemp("vicc-alias")
    (alias / "Crypto").symlink_to(CRYPTODOME)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(alias), *VICC_PACKAGE_DIRECTORIES]),
    }


class VirtualCard:
    """vicc connected to vpcd: the card is in the reader while the process runs."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.environment = environment
        self.process: subprocess.Popen[bytes] | None = None

    def insert(self) -> None:
        self.process = subprocess.Popen(
            ["vicc", "--type", "iso7816"],
            env=self.environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def pull(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()
            assert self.process.stderr is not None
            self.process.stderr.close()
        self.process = None


@pytest.fixture
def virtual_card(pcsc_daemon: None, vicc_environment: dict[str, str]) -> Iterator[VirtualCard]:
    card = VirtualCard(vicc_environment)
    try:
        yield card
    finally:
        card.pull()


def test_lists_the_virtual_readers(pcsc_daemon: None) -> None:
    assert VIRTUAL_READER in list_readers()


def _next(events: queue.Queue[CardEvent]) -> CardEvent:
    try:
        return events.get(timeout=EVENT_LIMIT_SECONDS)
    except queue.Empty:
        pytest.fail("no card event")


def test_watcher_sees_the_card_inserted_and_removed(virtual_card: VirtualCard) -> None:
    events: queue.Queue[CardEvent] = queue.Queue()
    watcher = PcscWatcher(events.put).start()
    try:
        assert watcher.wait_ready(STARTUP_LIMIT_SECONDS)
        assert watcher.available is True
        assert VIRTUAL_READER not in watcher.cards()
        virtual_card.insert()
        inserted = _next(events)
        assert (inserted.change, inserted.reader, inserted.atr) == (
            CardChange.INSERTED,
            VIRTUAL_READER,
            VICC_ATR,
        )
        assert watcher.cards() == {VIRTUAL_READER: VICC_ATR}
        virtual_card.pull()
        removed = _next(events)
        assert (removed.change, removed.reader) == (CardChange.REMOVED, VIRTUAL_READER)
        assert watcher.cards() == {}
    finally:
        watcher.stop()


def test_agent_reports_pulling_the_card_as_token_removed(
    virtual_card: VirtualCard, rsa_token: object
) -> None:
    config = AgentConfig(allowed_origins=frozenset({ALLOWED_ORIGIN}), port=0, poll_seconds=0.2)
    running = SigningAgent(config, TokenLibrary([SOFTHSM_MODULE]), use_pcsc=True).start()
    stream = AgentClient(running.url).events()
    try:
        name, ready = stream.next_event()
        assert (name, ready["pcsc"]) == ("ready", True)
        virtual_card.insert()
        inserted = stream.wait_for("token_inserted", source="pcsc")
        assert (inserted["reader"], inserted["atr"]) == (VIRTUAL_READER, VICC_ATR)
        virtual_card.pull()
        removed = stream.wait_for("token_removed", source="pcsc")
        assert removed["reader"] == VIRTUAL_READER
    finally:
        stream.close()
        running.stop()


NO_DAEMON_PROBE = textwrap.dedent(
    """
    import threading
    from tokens.pcsc import PcscWatcher

    said = []
    watcher = PcscWatcher(print, said.append, reconnect_seconds=0.01)
    watcher.start()
    watcher.wait_ready()
    while watcher.attempts < 5:
        threading.Event().wait(0.01)
    watcher.stop()
    print(len(said), watcher.available)
    """
)


def test_without_a_daemon_the_watcher_says_so_once() -> None:
    # PCSCLITE_CSOCK_NAME points libpcsclite at a socket nobody listens on: no daemon.
    completed = subprocess.run(
        [sys.executable, "-c", NO_DAEMON_PROBE],
        env={**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert completed.stdout.split() == ["1", "False"]
