"""`make demo`: a test PKI, a SoftHSM demo token, and the running revocation services.

The first run creates everything under ``.demo/`` in the working directory; later runs reuse it
(delete ``.demo/`` to start over). Runs in the foreground until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from softhsm.kit import SOFTHSM_MODULE, SoftHsmKit
from softhsm.pki import TestPki

DEMO_DIR = Path(".demo")
TOKEN_LABEL = "CertGate Demo"
TOKEN_PIN = "123456"
TOKEN_SO_PIN = "12345678"
PREFERRED_CRL_PORT = 18701
PREFERRED_OCSP_PORT = 18702  # the test PKI uses this and the next two ports (one responder per CA)


@dataclass(frozen=True)
class DemoIdentity:
    kind: str
    name: str
    key: str
    id_number: str | None = None
    uscc: str | None = None


DEMO_IDENTITIES = (
    DemoIdentity("enterprise", "示例建设工程有限公司", "rsa2048", uscc="91440300MA5H8REU3K"),
    DemoIdentity("person", "张三", "p256", id_number="11010519491231002X"),
)


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _choose_ports() -> tuple[int, int]:
    """The documented ports when they are free, else a free block (CRL port, OCSP base port)."""
    preferred = (PREFERRED_CRL_PORT, PREFERRED_OCSP_PORT)
    if _ports_free(PREFERRED_CRL_PORT, *range(PREFERRED_OCSP_PORT, PREFERRED_OCSP_PORT + 3)):
        return preferred
    for base in range(20000, 60000, 7):
        if _ports_free(*range(base, base + 4)):
            return base, base + 1
    raise SystemExit("Error: no free loopback ports for the demo's CRL and OCSP servers")


def prepare(demo_dir: Path) -> tuple[TestPki, SoftHsmKit, list[tuple[DemoIdentity, str, Path]]]:
    """Create (or reopen) the demo PKI and token; returns them and the token's certificates."""
    ready = demo_dir / "ready"
    if demo_dir.exists() and not ready.exists():
        shutil.rmtree(demo_dir)  # an earlier run stopped half-way: start again from nothing
    kit = SoftHsmKit(demo_dir / "softhsm")
    listing = demo_dir / "certificates.tsv"
    if ready.exists():
        pki = TestPki.open(demo_dir / "pki")
    else:
        demo_dir.mkdir(parents=True)
        crl_port, ocsp_port = _choose_ports()
        pki = TestPki.create(demo_dir / "pki", crl_port=crl_port, ocsp_port=ocsp_port)
        kit.init_token(TOKEN_LABEL, TOKEN_PIN, TOKEN_SO_PIN)
        rows = []
        for identity in DEMO_IDENTITIES:
            provisioned = kit.issue(
                label=TOKEN_LABEL,
                pin=TOKEN_PIN,
                pki=pki,
                kind=identity.kind,
                name=identity.name,
                id_number=identity.id_number,
                uscc=identity.uscc,
                key=identity.key,
            )
            rows.append(f"{identity.kind}\t{provisioned.cert_id.hex()}\t{provisioned.cert_path}")
        listing.write_text("\n".join(rows) + "\n", encoding="utf-8")
        ready.write_text("ready\n", encoding="utf-8")
    by_kind = {identity.kind: identity for identity in DEMO_IDENTITIES}
    certificates = []
    for row in listing.read_text(encoding="utf-8").splitlines():
        kind, cert_id_hex, cert_path = row.split("\t")
        certificates.append((by_kind[kind], cert_id_hex, Path(cert_path)))
    return pki, kit, certificates


def _wait_for_stop() -> None:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()


def main() -> int:
    demo_dir = DEMO_DIR.resolve()
    print(f"Preparing the CertGate demo in {demo_dir} ...", flush=True)
    pki, kit, certificates = prepare(demo_dir)
    conf = kit.environ()["SOFTHSM2_CONF"]
    pki_dir = demo_dir / "pki"
    enterprise_cert = next(path for who, _, path in certificates if who.kind == "enterprise")
    with pki.serve():
        print(f"""
CertGate demo: test PKI and SoftHSM demo token are ready; CRL and OCSP servers are running.

  Test PKI     {pki_dir}  (test keys, unencrypted: never trust this root in production)
  CRL          {pki.crl_url("rsa")}
  OCSP         {pki.ocsp_url("rsa")}
  Demo token   label "{TOKEN_LABEL}", user PIN {TOKEN_PIN}, SO PIN {TOKEN_SO_PIN}
               SOFTHSM2_CONF={conf}
""")
        for identity, cert_id_hex, cert_path in certificates:
            holder = identity.uscc or identity.id_number
            print(
                f"  {identity.kind:<10}   {identity.name} ({holder}), {identity.key}, "
                f"CKA_ID {cert_id_hex}\n               {cert_path}"
            )
        print(
            f"""
Try these in another shell, from this folder:

  export SOFTHSM2_CONF={conf}
  pkcs11-tool --module {SOFTHSM_MODULE} --list-objects --login --pin {TOKEN_PIN}
  .venv/bin/certgate softhsm list --dir {demo_dir / "softhsm"} --pin {TOKEN_PIN}
  .venv/bin/certgate cert verify {enterprise_cert} \\
      --trust {pki_dir}/root/ca.pem --chain {pki_dir}/rsa/ca.pem --json
  .venv/bin/certgate pki issue {pki_dir} --kind person --name 李四 --id-number 360426199101010071

The login gateway, signing agent and web pages are not part of this demo yet.
Press Ctrl-C to stop.""",
            flush=True,
        )
        _wait_for_stop()
    print("Demo stopped.")
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
