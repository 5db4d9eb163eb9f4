"""Signatures per second through the signing agent (HTTP included) against direct python-pkcs11.

Same run, same SoftHSM tokens (RSA-2048, P-256, Ed25519 made by ``softhsm.kit`` in a temporary
directory), same process. Columns:

- direct, session/sig: open + C_Login + find key + sign + logout + close for every signature, as
  the agent does (it keeps no logged-in session and no PIN);
- direct, cached: one logged-in session and key handle, sign only (the token's ceiling);
- agent HTTP: ``POST /v1/sign`` on one keep-alive connection to an in-process agent, which adds
  HTTP, JSON, origin checks, the certificate lookup and the chain.

Run: ``.venv/bin/python -m bench.bench_agent [--count N] [--key rsa2048 --key p256 ...]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pkcs11
from pkcs11 import ObjectClass

from softhsm.kit import SoftHsmKit
from softhsm.pki import TestPki
from tokens.agent import AgentConfig, SigningAgent
from tokens.login_message import login_message
from tokens.pkcs11 import (
    ALGORITHMS_BY_KEY_TYPE,
    SIGNING_METHODS,
    SOFTHSM_MODULE,
    KeyType,
    TokenLibrary,
)

ORIGIN = "https://login.example.test"
PIN = "123456"
SO_PIN = "12345678"
KEYS = ("rsa2048", "p256", "ed25519")
KEY_TYPES = {"rsa2048": KeyType.RSA, "p256": KeyType.EC_P256, "ed25519": KeyType.ED25519}
NONCE = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
CHALLENGE_ID = "bench-challenge"


@dataclass(frozen=True)
class Row:
    key: str
    per_session: float
    cached: float
    agent: float


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rate(count: int, operation: Callable[[], object]) -> float:
    operation()  # warm-up
    started = time.perf_counter()
    for _ in range(count):
        operation()
    return count / (time.perf_counter() - started)


def _direct(label: str, cert_id: bytes, key: str, count: int) -> tuple[float, float]:
    library = pkcs11.lib(SOFTHSM_MODULE)
    library.reinitialize()  # see the tokens just made (SoftHSM scans at C_Initialize)
    token = library.get_token(token_label=label)
    method = SIGNING_METHODS[ALGORITHMS_BY_KEY_TYPE[KEY_TYPES[key]][0]]
    message = login_message(ORIGIN, CHALLENGE_ID, NONCE)
    payload = hashlib.sha256(message).digest() if method.prehash_sha256 else message

    def sign_with(session: pkcs11.Session) -> bytes:
        private_key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=cert_id)
        return bytes(
            private_key.sign(  # type: ignore[attr-defined]
                payload, mechanism=method.mechanism, mechanism_param=method.mechanism_param
            )
        )

    def per_session() -> bytes:
        with token.open(user_pin=PIN) as session:
            return sign_with(session)

    per_session_rate = _rate(count, per_session)
    with token.open(user_pin=PIN) as session:
        private_key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=cert_id)

        def cached() -> bytes:
            return bytes(
                private_key.sign(  # type: ignore[attr-defined]
                    payload, mechanism=method.mechanism, mechanism_param=method.mechanism_param
                )
            )

        cached_rate = _rate(count, cached)
    return per_session_rate, cached_rate


def _agent(url: str, cert_id: bytes, count: int) -> float:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    body = json.dumps(
        {"cert_id": cert_id.hex(), "pin": PIN, "challenge_id": CHALLENGE_ID, "nonce": NONCE}
    ).encode()
    headers = {"Origin": ORIGIN, "Content-Type": "application/json"}

    def sign() -> None:
        connection.request("POST", "/v1/sign", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"agent answered {response.status}: {answer[:200]!r}")

    try:
        return _rate(count, sign)
    finally:
        connection.close()


def run(count: int, keys: Sequence[str]) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="certgate-bench-") as scratch:
        directory = Path(scratch)
        kit = SoftHsmKit(directory / "softhsm")
        previous = os.environ.get("SOFTHSM2_CONF")
        os.environ.update(kit.environ())
        try:
            pki = TestPki.create(
                directory / "pki",
                crl_port=_free_port(),
                ocsp_port=_free_port(),
                at=datetime.now(UTC),
            )
            made = []
            for key in keys:
                label = f"bench-{key}"
                kit.init_token(label, PIN, SO_PIN)
                issued = kit.issue(
                    label=label,
                    pin=PIN,
                    pki=pki,
                    kind="person",
                    name="张三",
                    id_number="11010519491231002X",
                    key=key,
                )
                made.append((key, label, issued.cert_id))
            direct = {key: _direct(label, cert_id, key, count) for key, label, cert_id in made}
            config = AgentConfig(allowed_origins=frozenset({ORIGIN}), port=0, poll_seconds=3600)
            agent = SigningAgent(config, TokenLibrary([SOFTHSM_MODULE]), use_pcsc=False).start()
            try:
                rows = [
                    Row(key, *direct[key], agent=_agent(agent.url, cert_id, count))
                    for key, _, cert_id in made
                ]
            finally:
                agent.stop()
        finally:
            if previous is None:
                os.environ.pop("SOFTHSM2_CONF", None)
            else:
                os.environ["SOFTHSM2_CONF"] = previous
    return rows


def render(rows: Sequence[Row], count: int) -> str:
    header = (
        f"{'key':<9} {'direct session/sig':>19} {'direct cached':>14} {'agent HTTP':>11} "
        f"{'agent/direct':>13}"
    )
    lines = [f"Signing-agent bench: {count} signatures per cell, signatures per second", header]
    for row in rows:
        lines.append(
            f"{row.key:<9} {row.per_session:>17.0f}/s {row.cached:>12.0f}/s "
            f"{row.agent:>9.0f}/s {row.agent / row.per_session:>12.0%}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; ``argv`` None means defaults (the bench runner calls ``main()``)."""
    parser = argparse.ArgumentParser(prog="bench.bench_agent", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="signatures per cell")
    parser.add_argument("--key", dest="keys", action="append", choices=KEYS)
    arguments = parser.parse_args([] if argv is None else list(argv))
    keys = arguments.keys or list(KEYS)
    print(render(run(arguments.count, keys), arguments.count), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
