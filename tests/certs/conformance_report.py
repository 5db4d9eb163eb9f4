"""Conformance figures for the certificate engine: x509-limbo and NIST PKITS, whole suites.

    .venv/bin/python -m tests.certs.conformance_report

The pytest suites (test_limbo.py, test_pkits.py) assert agreement case by case on the sections
that must agree; this report counts every case, required or not, so that a change of library
version or of engine can be compared before and after in one line per suite. A case "agrees"
when the engine accepts exactly the chains the suite expects to be accepted.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

from certs.errors import CertError
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.revocation.checker import RevocationChecker
from certs.validation import ChainValidator
from tests.certs import test_limbo, test_pkits


def _verdict(validate: Any, case: dict[str, Any]) -> str:
    try:
        validate(case)
    except (CertError, ValueError):
        return "FAILURE"
    return "SUCCESS"


def limbo() -> Counter[str]:
    counts: Counter[str] = Counter()
    for case in test_limbo.load_cases():
        reason = test_limbo.skip_reason(case)
        if reason is not None:
            counts[
                "peer name only" if reason == test_limbo.PEER_NAME_NOT_IN_SAN else "skipped"
            ] += 1
            continue
        agrees = _verdict(test_limbo._validate, case) == case["expected_result"]
        counts["agree" if agrees else "disagree"] += 1
    return counts


def _pkits_case(case: dict[str, Any]) -> None:
    policy = ValidationPolicy(
        revocation=RevocationMode.HARD_FAIL if case.get("revocation", True) else RevocationMode.OFF,
        required_key_usage=frozenset(),
        max_depth=16,
        certificate_policies=test_pkits.policy_inputs(case),
    )
    anchor = TrustAnchor(test_pkits._certificate("TrustAnchorRootCertificate.crt"), policy)
    intermediates = [test_pkits._certificate(n) for n in case.get("other_certs", [])]
    checker = RevocationChecker(
        crls=test_pkits._crls(case.get("crls") or [], [anchor.certificate, *intermediates])
    )
    ChainValidator([anchor], revocation=checker).validate(
        test_pkits._certificate(case["cert"]), intermediates, at=test_pkits.AT
    )


def pkits() -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {"all": Counter(), "required": Counter()}
    seen: set[str] = set()
    for case in json.loads((test_pkits.PKITS / "pkits.json").read_text()):
        key = f"{case['id']}-{case['name']}"
        if key in seen:
            continue
        seen.add(key)
        expected = "FAILURE" if "error" in case else "SUCCESS"
        outcome = "agree" if _verdict(_pkits_case, case) == expected else "disagree"
        counts["all"][outcome] += 1
        if case["id"][:3] in test_pkits.SECTIONS:
            counts["required"][outcome] += 1
    return counts


def main() -> int:
    import cryptography

    start = time.perf_counter()
    print(f"cryptography {cryptography.__version__}")
    lc = limbo()
    applicable = lc["agree"] + lc["disagree"]
    print(
        f"x509-limbo (whole suite): {lc['agree']}/{applicable} agree; not applicable: "
        f"{lc['peer name only']} fail on the peer name alone, {lc['skipped']} skipped by reason"
    )
    for section, c in pkits().items():
        print(f"NIST PKITS {section}: {c['agree']}/{c['agree'] + c['disagree']} agree")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
