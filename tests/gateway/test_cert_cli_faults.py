"""`certgate cert verify --json` against misbehaving CRL and OCSP servers, run as the real command.

The command must print its JSON answer (never a traceback), exit 1 with ``revocation_unavailable``
in hard-fail and 0 with a warning in soft-fail, and return within the fetch deadline plus the
command's own start-up (measured here with ``--revocation off``) and a small margin.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.certs.chains import AT, make_crl
from tests.certs.test_revocation_io import (
    SERVERS,
    WAITS_FOR_DEADLINE,
    MisbehavingServer,
    fault_chain,
)

CERTGATE = str(Path(sys.executable).with_name("certgate"))
DEADLINE = 1.0
MARGIN = 1.0


def write_pem(path: Path, *certificates: x509.Certificate) -> str:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certificates))
    return str(path)


def certgate(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run(
        [CERTGATE, "cert", "verify", *args], capture_output=True, text=True, timeout=60
    )
    return done, time.monotonic() - start


@pytest.fixture(scope="module")
def start_up(tmp_path_factory: pytest.TempPathFactory) -> float:
    """What the command costs without any network: the baseline of the timings."""
    folder = tmp_path_factory.mktemp("baseline")
    chain = fault_chain()
    leaf = write_pem(folder / "leaf.pem", chain.leaf.certificate, chain.intermediate.certificate)
    root = write_pem(folder / "root.pem", chain.root.certificate)
    timings = []
    for _ in range(2):
        at = AT.isoformat()
        done, elapsed = certgate(leaf, "--trust", root, "--revocation", "off", "--at", at)
        assert done.returncode == 0, done.stderr
        timings.append(elapsed)
    return min(timings)


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, MisbehavingServer]]:
    running = MisbehavingServer(SERVERS[request.param])
    yield request.param, running
    running.close()


def arguments(folder: Path, source: str, running: MisbehavingServer) -> list[str]:
    if source == "ocsp":
        chain = fault_chain(ocsp_url=running.url("/ocsp"))
    else:
        chain = fault_chain(crl_url=running.url("/issuing.crl"))
    root_crl = folder / "root.crl"
    root_crl.write_bytes(chain.root_crl)
    return [
        write_pem(folder / "leaf.pem", chain.leaf.certificate),
        "--chain", write_pem(folder / "ca.pem", chain.intermediate.certificate),
        "--trust", write_pem(folder / "root.pem", chain.root.certificate),
        "--crl", str(root_crl),
        "--ocsp-timeout", str(DEADLINE), "--crl-timeout", str(DEADLINE),
        "--at", AT.isoformat(), "--json", "--lang", "en",
    ]  # fmt: skip


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
@pytest.mark.parametrize("source", ["crl-distribution-point", "ocsp"])
def test_cert_verify_answers_json_within_the_deadline(
    tmp_path: Path,
    server: tuple[str, MisbehavingServer],
    source: str,
    mode: str,
    start_up: float,
) -> None:
    kind, running = server
    done, elapsed = certgate(*arguments(tmp_path, source, running), "--revocation", mode)
    assert "Traceback" not in done.stderr, done.stderr
    document = json.loads(done.stdout)
    if mode == "hard-fail":
        assert done.returncode == 1, document
        assert document["ok"] is False
        assert document["code"] == "revocation_unavailable"
        assert "127.0.0.1" in document["detail"]
    else:
        assert done.returncode == 0, document
        assert document["ok"] is True
        assert any("revocation unavailable" in w for w in document["warnings"])
    assert elapsed < start_up + DEADLINE + MARGIN, f"{kind}: {elapsed:.2f} s"
    if kind in WAITS_FOR_DEADLINE:
        assert elapsed >= DEADLINE, f"{kind}: {elapsed:.2f} s"


def test_plain_output_names_the_failure_too(tmp_path: Path) -> None:
    running = MisbehavingServer(SERVERS["not-http"])
    try:
        args = [a for a in arguments(tmp_path, "ocsp", running) if a != "--json"]
        done, _ = certgate(*args)
    finally:
        running.close()
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stdout.startswith("revocation_unavailable: ")


@pytest.mark.parametrize(("mode", "exit_code"), [("hard-fail", 1), ("soft-fail", 0)])
def test_crl_file_with_an_unknown_critical_extension(
    tmp_path: Path, mode: str, exit_code: int
) -> None:
    """A --crl file that is a CRL RFC 5280 makes unusable is an unavailable status, not a usage
    error: the revocation mode decides."""
    chain = fault_chain()
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    crl = tmp_path / "issuing.crl"
    crl.write_bytes(make_crl(chain.intermediate, extensions=[(unknown, True)]))
    root_crl = tmp_path / "root.crl"
    root_crl.write_bytes(chain.root_crl)
    done, _ = certgate(
        write_pem(tmp_path / "leaf.pem", chain.leaf.certificate),
        "--chain", write_pem(tmp_path / "ca.pem", chain.intermediate.certificate),
        "--trust", write_pem(tmp_path / "root.pem", chain.root.certificate),
        "--crl", str(crl), "--crl", str(root_crl),
        "--revocation", mode, "--at", AT.isoformat(), "--json", "--lang", "en",
    )  # fmt: skip
    assert "Traceback" not in done.stderr
    document = json.loads(done.stdout)
    assert done.returncode == exit_code, document
    if mode == "hard-fail":
        assert document["code"] == "revocation_unavailable"
        assert "unknown critical CRL extension 1.3.6.1.4.1.55555.1" in document["detail"]
    else:
        assert any("unknown critical CRL extension" in w for w in document["warnings"])


@pytest.mark.parametrize(
    ("option", "value"),
    [("--ocsp-timeout", "0"), ("--crl-timeout", "soon"), ("--crl-max-bytes", "12")],
)
def test_fetch_limits_are_checked_as_usage(tmp_path: Path, option: str, value: str) -> None:
    chain = fault_chain()
    done, _ = certgate(
        write_pem(tmp_path / "leaf.pem", chain.leaf.certificate),
        "--trust", write_pem(tmp_path / "root.pem", chain.root.certificate),
        option, value,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
