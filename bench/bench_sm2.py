"""SM2: verifications per second in the engine beside ``openssl speed sm2`` run in the same bench,
and one warm SM2 chain validation (RSA root, SM2 CA, SM2 leaf, SM2-signed CRL) beside its bare
signature checks.

The engine verifies SM2 through OpenSSL 3's own SM2 (``certs.sm2``), so OpenSSL's speed is the
ceiling; what the engine adds is the Python calls around it (goal: at least half of OpenSSL's
rate). The chain's bare checks are its two certificate signatures (RSA root over the SM2 CA, SM2
CA over the leaf), which every validation verifies; the SM2 CRL's signature is checked once per
CRL and remembered (goal: a warm validation within 3x of the bare checks).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import padding

from bench import Row, per_call, print_table
from certs import sm2
from certs.keys import sm2_public_key
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlStore
from softhsm.pki import TestPki

START = datetime(2026, 3, 1, tzinfo=UTC)
AT = START + timedelta(hours=1)
OPENSSL_SECONDS = 3


def openssl_sm2_verifies_per_second() -> float | None:
    """``openssl speed -seconds N sm2``: the verify/s column, or None when it does not run."""
    try:
        result = subprocess.run(
            ["openssl", "speed", "-seconds", str(OPENSSL_SECONDS), "sm2"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    for line in result.stdout.splitlines():
        found = re.match(r"\s*256 bits SM2.*\s([\d.]+)\s+([\d.]+)\s*$", line)
        if found:
            return float(found.group(2))
    return None


def run() -> list[Row]:
    from certs.validation import ChainValidator

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        pki = TestPki.create(Path(folder) / "pki", at=START)
        issued = pki.issue(
            "person", "张三", id_number="11010519491231002X", key="sm2", ca="sm2", at=START
        )
        leaf, sm2_ca, root = (
            issued.certificate,
            pki.intermediate_certificate("sm2"),
            issued.chain[1],
        )
        key = sm2_public_key(sm2_ca)
        assert key is not None
        tbs, signature = leaf.tbs_certificate_bytes, leaf.signature

        def engine_verify() -> bool:
            return key.verify(signature, tbs, sm2.DEFAULT_SIGNER_ID)

        openssl_rate = openssl_sm2_verifies_per_second()
        rows.append(
            Row(
                "SM2 verifications per second (engine)",
                1 / per_call(engine_verify, number=500),
                "/s",
                "openssl speed sm2" if openssl_rate else "openssl speed sm2 did not run",
                openssl_rate,
                ">= 0.5x",
            )
        )

        crl_der = pki.crl_path("sm2").read_bytes()
        store = CrlStore()
        store.add(crl_der, source="sm2.crl")
        store.add(pki.crl_path("root").read_bytes(), source="root.crl")
        policy = ValidationPolicy(revocation=RevocationMode.HARD_FAIL, use_ocsp=False)
        validator = ChainValidator(
            [TrustAnchor(root, policy)], revocation=RevocationChecker(crls=store)
        )
        intermediates = [sm2_ca]

        def validate() -> object:
            return validator.validate(leaf, intermediates, at=AT)

        root_key = root.public_key()
        ca_hash = sm2_ca.signature_hash_algorithm
        assert ca_hash is not None

        def signatures() -> None:
            key.verify(signature, tbs)  # the leaf, by the SM2 CA
            root_key.verify(  # type: ignore[union-attr, call-arg]
                sm2_ca.signature, sm2_ca.tbs_certificate_bytes, padding.PKCS1v15(), ca_hash
            )

        rows.append(
            Row(
                "SM2 chain: validate + SM2 CRL check (warm)",
                per_call(validate) * 1e6,
                "µs",
                "bare signature checks",
                per_call(signatures) * 1e6,
                "<= 3x",
            )
        )
    return rows


def main() -> None:
    print_table("SM2 (OpenSSL 3 through certs.sm2), same run", run())


if __name__ == "__main__":
    main()
