"""NIST PKITS ("Test Certificates 2011") through the certificate engine.

Sections 4.1-4.7, 4.13 and 4.14 must agree; the data is read from ../shared/conformance/pkits.
Every case trusts TrustAnchorRootCertificate and has the anchor's own CRL available (the suite
assumes it: intermediates issued by the anchor are revocation-checked against it). Cases with
``"revocation": false`` validate with revocation off; all others hard-fail.
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certs.errors import CertError, CertificateRevoked
from certs.policy import (
    ANY_POLICY,
    PolicyInputs,
    RevocationMode,
    TrustAnchor,
    ValidationPolicy,
)
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlInvalid, CrlStore
from certs.validation import ChainValidator

PKITS = Path(__file__).parents[2].parent / "shared/conformance/pkits"
SECTIONS = {
    "401",
    "402",
    "403",
    "404",
    "405",
    "406",
    "407",
    "408",
    "409",
    "410",
    "411",
    "412",
    "413",
    "414",
}
# PKITS certificates are valid 2010-01-01 .. 2030-12-31; any moment in between will do.
AT = datetime(2022, 6, 1, tzinfo=UTC)

SKIP = {
    "40104": "DSA: the gateway accepts RSA, ECDSA and EdDSA client keys only",
    "40105": "DSA parameter inheritance: not supported (DSA keys are not accepted)",
    "40106": "DSA: the gateway accepts RSA, ECDSA and EdDSA client keys only",
}
XFAIL: dict[str, str] = {}


def _cases() -> list[Any]:
    if not (PKITS / "pkits.json").exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{PKITS} is absent"))]
    cases = json.loads((PKITS / "pkits.json").read_text())
    params = []
    seen: set[str] = set()
    for case in cases:
        if case["id"][:3] not in SECTIONS:
            continue
        case_id = f"{case['id']}-{case['name']}"
        if case_id in seen:  # the file lists 4.13.3 twice
            continue
        seen.add(case_id)
        marks = []
        if case["id"] in SKIP:
            marks.append(pytest.mark.skip(reason=SKIP[case["id"]]))
        if case["id"] in XFAIL:
            marks.append(pytest.mark.xfail(reason=XFAIL[case["id"]], strict=True))
        params.append(pytest.param(case, id=case_id, marks=marks))
    return params


def _certificate(name: str) -> x509.Certificate:
    with warnings.catch_warnings():
        # PKITS 4.4.15 deliberately carries a negative serial number.
        warnings.simplefilter("ignore")
        return x509.load_der_x509_certificate((PKITS / "certs" / name).read_bytes())


def _crls(names: list[str], issuers: list[x509.Certificate]) -> CrlStore:
    # Knowing the path's CA certificates, the store checks CRL signatures at load (a CRL
    # signed by a separate key is left to the check at first use).
    store = CrlStore(issuers=issuers)
    for name in ["TrustAnchorRootCRL.crl", *names]:
        try:
            store.add((PKITS / "crls" / name).read_bytes(), source=name)
        except CrlInvalid:
            pass  # an unusable CRL is part of the test (4.4.9, 4.4.10, ...): it stays out
    return store


# The suite's expected messages come from another library; map them to the engine's codes.
_CODE_BY_MESSAGE = (
    ("revocation checks failed", "revocation_unavailable"),  # before "was revoked": 4.4.21
    ("was revoked", "certificate_revoked"),
    ("no revocation information", "revocation_unavailable"),
    ("is not valid until", "certificate_not_yet_valid"),
    (" expired ", "certificate_expired"),
)


# Where the engine's code differs from the suite's wording, and why.
CODE_OVERRIDES: dict[str, str] = {}


def policy_inputs(case: dict[str, Any]) -> PolicyInputs:
    """The case's initial policy set and flags (RFC 5280 §6.1.1), as a trust anchor's policy."""
    params = case.get("params") or {}
    return PolicyInputs(
        user_initial_policy_set=frozenset(params.get("user_initial_policy_set", [ANY_POLICY])),
        initial_explicit_policy=params.get("initial_explicit_policy", False),
        initial_policy_mapping_inhibit=params.get("initial_policy_mapping_inhibit", False),
        initial_any_policy_inhibit=params.get("initial_any_policy_inhibit", False),
    )


def _expected_code(case: dict[str, Any]) -> str:
    if case["id"] in CODE_OVERRIDES:
        return CODE_OVERRIDES[case["id"]]
    message = case["error"]["msg_regex"]
    return next(
        (code for text, code in _CODE_BY_MESSAGE if text in message), "certificate_untrusted"
    )


# The suite's wording of CRL reasons -> the engine's reason names.
REASONS = {
    "compromised key": "key_compromise",
    "certificate hold": "certificate_hold",
    "affiliation change": "affiliation_changed",
}
_REVOKED = re.compile(r"revoked at (\d\d:\d\d:\d\d) on (\d{4}-\d\d-\d\d), due to an? ([a-z ]+)")


def _check_revocation_details(error: CertificateRevoked, message: str) -> None:
    match = _REVOKED.search(message.replace("\\", ""))
    assert match is not None, message
    clock, day, reason = match.groups()
    assert error.revoked_at == datetime.fromisoformat(f"{day}T{clock}+00:00")
    assert error.reason == REASONS[reason.strip()]


@pytest.mark.parametrize("case", _cases())
def test_pkits(case: dict[str, Any]) -> None:
    revocation = case.get("revocation", True)
    policy = ValidationPolicy(
        revocation=RevocationMode.HARD_FAIL if revocation else RevocationMode.OFF,
        required_key_usage=frozenset(),
        max_depth=16,
        certificate_policies=policy_inputs(case),
    )
    anchor = TrustAnchor(_certificate("TrustAnchorRootCertificate.crt"), policy)
    leaf = _certificate(case["cert"])
    intermediates = [_certificate(n) for n in case["other_certs"]]
    checker = RevocationChecker(
        crls=_crls(case.get("crls") or [], [anchor.certificate, *intermediates])
    )
    validator = ChainValidator([anchor], revocation=checker)
    if "error" in case:
        with pytest.raises(CertError) as raised:
            validator.validate(leaf, intermediates, at=AT)
        assert raised.value.code == _expected_code(case)
        if isinstance(raised.value, CertificateRevoked):
            _check_revocation_details(raised.value, case["error"]["msg_regex"])
    else:
        validator.validate(leaf, intermediates, at=AT)
