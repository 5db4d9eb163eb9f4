"""Path-building attacks: what a client that chooses the certificates it sends can try.

Under TLS client authentication (and in the login API) the client supplies the intermediates, so
it can add, reorder, cross-sign and loop them. Whatever path the engine ends up accepting — the
one pyca/cryptography's verifier found, or one the engine's own builder found — every check of
the engine runs on it. Two sources: BetterTLS's 81 path-building cases (in x509-limbo's whole
suite, ``limbo-full.json.gz``) and attacks written here against each restriction a CA can place.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.errors import CertError, CertificateUntrusted
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.validation import ChainValidator
from tests.certs import test_limbo
from tests.certs.chains import (
    AT,
    EPOCH,
    Issued,
    _builder,
    _sign,
    key_usage,
    make_leaf,
    name,
    private_key,
)

LIMBO_FULL = Path(__file__).parents[2].parent / "shared/conformance/limbo-full.json.gz"
POLICY = ValidationPolicy(revocation=RevocationMode.OFF)


def _bettertls_cases() -> list[Any]:
    if not LIMBO_FULL.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{LIMBO_FULL} is absent"))]
    with gzip.open(LIMBO_FULL) as f:
        cases = json.load(f)["testcases"]
    return [
        pytest.param(case, id=case["id"])
        for case in cases
        if case["id"].startswith("bettertls::pathbuilding::")
    ]


@pytest.mark.parametrize("case", _bettertls_cases())
def test_bettertls_path_building(case: dict[str, Any]) -> None:
    # Each leaf names the peer the case expects, so only path building decides the verdict.
    if case["expected_result"] == "SUCCESS":
        test_limbo._validate(case)
    else:
        with pytest.raises((CertError, ValueError)):
            test_limbo._validate(case)


# --- attacks on each restriction a CA places ----------------------------------------------------


def _ca(
    common_name: str,
    issuer: Issued | None,
    *,
    key_label: str | None = None,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    path_length: int | None = None,
    usage: x509.KeyUsage | None = None,
    serial: int = 7,
    not_after: timedelta = timedelta(days=3650),
) -> Issued:
    """A CA certificate; ``key_label`` reuses another CA's key (to re-issue "the same" CA)."""
    key = private_key("p256", key_label or common_name)
    builder = (
        _builder(
            name(common_name),
            issuer,
            key,
            serial=serial,
            not_before=EPOCH,
            not_after=EPOCH + not_after,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .add_extension(usage or key_usage("key_cert_sign", "crl_sign"), True)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return Issued(_sign(builder, issuer.key if issuer else key), key)


SERVER_ONLY = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
EXCLUDE_SUBJECT = (
    x509.NameConstraints(
        permitted_subtrees=None,
        excluded_subtrees=[x509.DirectoryName(name("张三 Test Person"))],
    ),
    True,
)

# (restriction, how the restricted intermediate is made): each must refuse the leaf below it.
RESTRICTIONS: dict[str, Callable[[Issued], Issued]] = {
    "intermediate EKU serverAuth only": lambda root: _ca(
        "Restricted CA", root, extensions=(SERVER_ONLY,)
    ),
    "intermediate name constraints exclude the leaf": lambda root: _ca(
        "Restricted CA", root, extensions=(EXCLUDE_SUBJECT,)
    ),
    "intermediate keyUsage without keyCertSign": lambda root: _ca(
        "Restricted CA", root, usage=key_usage("crl_sign")
    ),
    "intermediate expired": lambda root: _ca("Restricted CA", root, not_after=timedelta(days=10)),
}


def _validator(root: Issued) -> ChainValidator:
    return ChainValidator([TrustAnchor(root.certificate, POLICY)])


def _attacker_copy(restricted: Issued) -> x509.Certificate:
    """The restricted CA's subject and key, signed by the attacker's own root (anyone can)."""
    attacker_root = _ca("Attacker Root", None)
    return _ca("Restricted CA", attacker_root, key_label="Restricted CA").certificate


@pytest.mark.parametrize("restriction", RESTRICTIONS)
@pytest.mark.parametrize(
    "extra",
    [
        "none",
        "attacker's copy after",
        "attacker's copy before",
        "copy twice",
    ],
)
def test_a_restricted_intermediate_cannot_be_routed_around(restriction: str, extra: str) -> None:
    root = _ca("Attack Test Root", None)
    restricted = RESTRICTIONS[restriction](root)
    leaf = make_leaf("张三 Test Person", restricted).certificate
    copy = _attacker_copy(restricted)
    intermediates = {
        "none": [restricted.certificate],
        "attacker's copy after": [restricted.certificate, copy],
        "attacker's copy before": [copy, restricted.certificate],
        "copy twice": [copy, restricted.certificate, copy],
    }[extra]
    with pytest.raises(CertError):
        _validator(root).validate(leaf, intermediates, at=AT)


def test_reordered_duplicated_and_unrelated_intermediates_still_validate() -> None:
    root = _ca("Order Test Root", None)
    upper = _ca("Upper CA", root)
    lower = _ca("Lower CA", upper)
    leaf = make_leaf("张三 Test Person", lower).certificate
    unrelated = _ca("Unrelated CA", _ca("Unrelated Root", None)).certificate
    for intermediates in (
        [lower.certificate, upper.certificate],
        [upper.certificate, lower.certificate],
        [unrelated, upper.certificate, unrelated, lower.certificate, lower.certificate],
    ):
        chain = _validator(root).validate(leaf, intermediates, at=AT)
        assert chain.certificates == (
            leaf,
            lower.certificate,
            upper.certificate,
            root.certificate,
        )


def test_a_cross_signed_intermediate_reaches_the_trusted_root() -> None:
    trusted = _ca("Cross Trusted Root", None)
    other = _ca("Cross Other Root", None)
    by_other = _ca("Cross CA", other, key_label="Cross CA")
    by_trusted = _ca("Cross CA", trusted, key_label="Cross CA", serial=8)
    leaf = make_leaf("张三 Test Person", by_other).certificate  # same subject and key
    chain = _validator(trusted).validate(
        leaf, [by_other.certificate, other.certificate, by_trusted.certificate], at=AT
    )
    assert chain.certificates[-1] == trusted.certificate


def test_a_loop_of_cross_signed_cas_ends_untrusted_not_hanging() -> None:
    trusted = _ca("Loop Trusted Root", None)
    loop_a = _ca("Loop A", None)
    loop_b = _ca("Loop B", loop_a)
    a_by_b = _ca("Loop A", loop_b, key_label="Loop A", serial=9)
    leaf = make_leaf("张三 Test Person", loop_b).certificate
    with pytest.raises(CertificateUntrusted):
        _validator(trusted).validate(
            leaf, [loop_b.certificate, a_by_b.certificate, loop_a.certificate] * 4, at=AT
        )


def test_a_valid_path_is_found_beside_an_expired_copy_of_its_intermediate() -> None:
    root = _ca("Renewal Test Root", None)
    old = _ca("Renewed CA", root, key_label="Renewed CA", not_after=timedelta(days=10))
    new = _ca("Renewed CA", root, key_label="Renewed CA", serial=8)
    leaf = make_leaf("张三 Test Person", new).certificate
    chain = _validator(root).validate(leaf, [old.certificate, new.certificate], at=AT)
    assert chain.certificates[1] == new.certificate
