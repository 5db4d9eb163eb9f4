"""x509-limbo, the whole suite (../shared/conformance/limbo-full.json.gz, BetterTLS included),
through the certificate engine.

The engine validates client certificates, so it never compares a certificate with a peer's DNS
name or IP address. A SERVER case that expects a failure while its leaf's subjectAltName does not
even name the expected peer fails, for a server validator, on the peer name alone — such cases
(about 6,580, nearly all BetterTLS name-constraint cases) do not apply and are skipped with that
reason. So are the SERVER cases listed by id whose verdict depends only on the peer name, and the
few where the gateway's policy differs, each with a one-line reason (as pyca/cryptography's own
limbo test does). Every other case — SERVER cases included, checked as path validation with the
case's EKU — must agree with ``expected_result``; has-crl cases run through the engine's CRL
layer in hard-fail mode.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certs.errors import CertError
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlInvalid, CrlStore
from certs.validation import ChainValidator

CONFORMANCE = Path(__file__).parents[2].parent / "shared/conformance"
LIMBO = CONFORMANCE / "limbo-full.json.gz"

PEER_NAME_ONLY = (
    "verdict depends only on the SERVER peer name, which client validation never checks"
)
SKIP: dict[str, str] = {
    "webpki::cn::ipv4-hex-mismatch": PEER_NAME_ONLY,
    "webpki::cn::ipv4-leading-zeros-mismatch": PEER_NAME_ONLY,
    "webpki::cn::ipv6-uppercase-mismatch": PEER_NAME_ONLY,
    "webpki::cn::ipv6-uncompressed-mismatch": PEER_NAME_ONLY,
    "webpki::cn::ipv6-non-rfc5952-mismatch": PEER_NAME_ONLY,
    "webpki::cn::punycode-not-in-san": PEER_NAME_ONLY,
    "webpki::cn::utf8-vs-punycode-mismatch": PEER_NAME_ONLY,
    "webpki::cn::not-in-san": PEER_NAME_ONLY,
    "webpki::cn::case-mismatch": PEER_NAME_ONLY,
    "webpki::san::mismatch-domain-san": PEER_NAME_ONLY,
    "webpki::san::mismatch-subdomain-san": PEER_NAME_ONLY,
    "webpki::san::mismatch-subdomain-apex-san": PEER_NAME_ONLY,
    "webpki::san::mismatch-apex-subdomain-san": PEER_NAME_ONLY,
    "webpki::san::public-suffix-wildcard-san": PEER_NAME_ONLY,
    "webpki::san::public-suffix-multi-label-wildcard-san": PEER_NAME_ONLY,
    "webpki::san::public-suffix-private-namespace-wildcard-san": PEER_NAME_ONLY,
    "webpki::san::wildcard-embedded-leftmost-san": PEER_NAME_ONLY,
    "webpki::san::wildcard-not-in-leftmost-san": PEER_NAME_ONLY,
    "webpki::san::wildcard-match-across-labels-san": PEER_NAME_ONLY,
    "webpki::san::wildcard-embedded-ulabel-san": PEER_NAME_ONLY,
    "webpki::san::unicode-emoji-san": PEER_NAME_ONLY,
    "webpki::san::no-san": "a SERVER needs a SAN to match its peer name; clients may have none",
    "webpki::san::san-wildcard-only": PEER_NAME_ONLY,
    "webpki::san::san-wildcard-only-tld": PEER_NAME_ONLY,
    "rfc5280::san::underscore-dns": PEER_NAME_ONLY,
    "rfc5280::san::ip-in-dns": PEER_NAME_ONLY,
    "rfc5280::ca-as-leaf-wrong-san": PEER_NAME_ONLY,
    # Anchor policy, not path validation: the gateway accepts anyExtendedKeyUsage and a leaf with
    # no EKU per anchor (RFC 5280 §4.2.1.12); the CA/Browser Forum subscriber EKU rules
    # (pedantic-webpki-eku) are for TLS servers.
    "webpki::eku::ee-anyeku": "pedantic-webpki-eku: anyEKU is allowed by anchor policy",
    "webpki::eku::ee-critical-eku": "pedantic-webpki-eku: EKU criticality is a CABF server rule",
    "webpki::eku::ee-without-eku": "conflicts_with rfc5280::eku::ee-without-eku",
    "webpki::eku::root-has-eku": "pedantic-webpki-eku: an EKU on a root is a CABF server rule",
    # Conflicting expectations: RFC 5280 and PKITS 4.6.8/4.6.14 accept a CA certificate as the
    # end entity; CABF forbids it for TLS servers.
    "webpki::ee-basicconstraints-ca": "conflicts with rfc5280::ca-as-leaf and PKITS 4.6.8",
    "webpki::ca-as-leaf": "conflicts_with rfc5280::ca-as-leaf (and PKITS 4.6.8)",
    "rfc5280::nc::permitted-dns-match-noncritical": (
        "conflicts_with webpki::nc::permitted-dns-match-noncritical (both in this file)"
    ),
    "rfc5280::root-non-critical-basic-constraints": (
        "a trust anchor is configured input (RFC 5280 §6.1.1 (d)): its own extensions' "
        "criticality does not refuse it; production Chinese roots (MCSCA) have a non-critical "
        "basicConstraints"
    ),
    "rfc5280::pc::ica-noncritical-pc": (
        "conflicts with NIST PKITS: 16 of its CA certificates (GoodsubCACert among them) carry a "
        "non-critical policyConstraints in valid paths; RFC 5280 §6.1 never looks at criticality"
    ),
    "rfc5280::aki::cross-signed-root-missing-aki": (
        "pedantic-rfc5280: a trust anchor is configured input (RFC 5280 §6.1.1 (d)); "
        "cve::cve-2024-0567 needs such an anchor accepted"
    ),
}

EKU_OIDS = {
    "serverAuth": "1.3.6.1.5.5.7.3.1",
    "clientAuth": "1.3.6.1.5.5.7.3.2",
}
KEY_USAGE_NAMES = {
    "digitalSignature": "digital_signature",
    "contentCommitment": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
}
# When a case gives no validation time, any fixed moment inside the test certificates' validity.
DEFAULT_TIME = datetime(2025, 1, 1, tzinfo=UTC)


PEER_NAME_NOT_IN_SAN = (
    "a SERVER failure while the leaf's subjectAltName does not name the expected peer: a "
    "server validator fails on the peer name alone, which client validation never checks"
)


def load_cases() -> list[dict[str, Any]]:
    with gzip.open(LIMBO) as data:
        return json.load(data)["testcases"]  # type: ignore[no-any-return]


def _peer_named_in_san(case: dict[str, Any]) -> bool:
    """The leaf's subjectAltName names the case's expected peer (wildcards as RFC 6125)."""
    peer = case["expected_peer_name"]
    if peer is None:
        return True
    try:
        san = _load(case["peer_certificate"]).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return False  # no readable SAN names the peer
    if peer["kind"] == "IP":
        return ipaddress.ip_address(peer["value"]) in san.value.get_values_for_type(x509.IPAddress)
    name = peer["value"].lower()
    for dns in (d.lower() for d in san.value.get_values_for_type(x509.DNSName)):
        if dns == name or (dns.startswith("*.") and name.partition(".")[2] == dns[2:]):
            return True
    return False


def skip_reason(case: dict[str, Any]) -> str | None:
    """Why a case does not apply to client certificates, or None when it must agree."""
    if case["id"] in SKIP:
        return SKIP[case["id"]]
    if (
        case["validation_kind"] == "SERVER"
        and case["expected_result"] == "FAILURE"
        and not _peer_named_in_san(case)
    ):
        return PEER_NAME_NOT_IN_SAN
    return None


def _cases() -> list[Any]:
    if not LIMBO.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{LIMBO} is absent"))]
    params = []
    for case in load_cases():
        reason = skip_reason(case)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


def _policy(case: dict[str, Any]) -> ValidationPolicy:
    purposes = case["extended_key_usage"] or (
        ["serverAuth"] if case["validation_kind"] == "SERVER" else ["clientAuth"]
    )
    depth = case["max_chain_depth"]
    return ValidationPolicy(
        revocation=RevocationMode.HARD_FAIL if case["crls"] else RevocationMode.OFF,
        required_key_usage=frozenset(KEY_USAGE_NAMES[k] for k in case["key_usage"]),
        extended_key_usage=EKU_OIDS[purposes[0]],
        max_depth=min(depth + 2, 32) if depth is not None else 8,
    )


def _load(pem: str) -> x509.Certificate:
    with warnings.catch_warnings():
        # Some cases carry non-positive serial numbers on purpose (pyca/cryptography warns).
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificate(pem.encode())


def _validate(case: dict[str, Any]) -> None:
    policy = _policy(case)
    anchors = [TrustAnchor(_load(pem), policy) for pem in case["trusted_certs"]]
    store = CrlStore()
    for index, pem in enumerate(case["crls"]):
        try:
            store.add(pem.encode(), source=f"crl-{index}")
        except CrlInvalid:
            pass  # an unusable CRL is what some cases test; hard-fail then refuses
    validator = ChainValidator(anchors, revocation=RevocationChecker(crls=store))
    leaf = _load(case["peer_certificate"])
    intermediates = [_load(pem) for pem in case["untrusted_intermediates"]]
    at = (
        datetime.fromisoformat(case["validation_time"]) if case["validation_time"] else DEFAULT_TIME
    )
    validator.validate(leaf, intermediates, at=at)


@pytest.mark.parametrize("case", _cases())
def test_limbo(case: dict[str, Any]) -> None:
    if case["expected_result"] == "SUCCESS":
        _validate(case)
    else:
        with pytest.raises((CertError, ValueError)):
            _validate(case)
