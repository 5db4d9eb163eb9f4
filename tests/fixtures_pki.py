"""Fixtures that make a real test PKI (softhsm.pki) with a fixed clock.

- ``PKI_EPOCH``: the fixed clock; the PKI's CAs start then, and so do certificates issued with
  ``at=PKI_EPOCH``. Validate at ``PKI_EPOCH + timedelta(days=1)`` (``PKI_VALIDATION_TIME``).
- ``test_pki`` (session): one PKI in a temporary folder, on free loopback ports. Tests issue and
  revoke their own leaves in it; they must not assume it is empty.
- ``running_pki`` (function): ``test_pki`` served (CRL HTTP server and ``openssl ocsp``
  responders) for the duration of one test.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from softhsm.pki import CA_NAMES, TestPki
from softhsm.pki_server import RunningPki

PKI_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PKI_VALIDATION_TIME = PKI_EPOCH + timedelta(days=1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# Ports chosen now and bound later (the test PKI's responders start when a test needs them) are
# taken below the kernel's ephemeral range (32768-60999 on Linux), where no socket bound to port 0
# and no outgoing connection of the suite can be handed one of them meanwhile.
RESERVED_PORTS = range(20000, 32000)


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive free ports outside the ephemeral range (the OCSP
    responders need one per CA)."""
    start = secrets.randbelow(len(RESERVED_PORTS) - count)
    for offset in range(0, len(RESERVED_PORTS) - count, count + 1):
        first = RESERVED_PORTS.start + (start + offset) % (len(RESERVED_PORTS) - count)
        if all(_is_free(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def _is_free(port: int) -> bool:
    # openssl ocsp listens on every interface, so probe the wildcard address.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def create_test_pki(directory: Path) -> TestPki:
    """A new PKI in ``directory`` on free ports, created at ``PKI_EPOCH``."""
    return TestPki.create(
        directory,
        crl_port=free_port_block(1),
        ocsp_port=free_port_block(len(CA_NAMES)),
        at=PKI_EPOCH,
    )


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return create_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def running_pki(test_pki: TestPki) -> Iterator[RunningPki]:
    with test_pki.serve() as running:
        yield running
