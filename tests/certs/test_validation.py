"""ChainValidator: every error code of the engine, per-anchor policy, revocation modes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.chain import VerifiedChain
from certs.errors import (
    CertError,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    CertificateUntrusted,
    CertificateUsageInvalid,
    RevocationUnavailable,
)
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from certs.revocation.checker import RevocationChecker
from certs.revocation.crl import CrlStore
from certs.revocation.status import RevocationState, RevocationStatus
from certs.validation import ChainValidator
from tests.certs.chains import (
    AT,
    EPOCH,
    Chain,
    Revocation,
    build_chain,
    key_usage,
    make_ca,
    make_crl,
    make_leaf,
)


def _validator(
    chain: Chain, *, crls: tuple[bytes, ...] | None = None, policy: ValidationPolicy | None = None
) -> ChainValidator:
    """A validator trusting ``chain``'s root, with both CAs' (empty) CRLs unless given."""
    store = CrlStore()
    if crls is None:
        crls = (make_crl(chain.root), make_crl(chain.intermediate))
    for index, crl in enumerate(crls):
        store.add(crl, source=f"crl-{index}")
    anchor = TrustAnchor(chain.root.certificate, policy or chain.policy)
    return ChainValidator([anchor], revocation=RevocationChecker(crls=store))


def test_valid_chain_returns_verified_chain_with_statuses() -> None:
    chain = build_chain()
    verified = _validator(chain).validate(chain.leaf.certificate, chain.intermediates, at=AT)
    assert isinstance(verified, VerifiedChain)
    assert verified.certificates == chain.certificates()
    assert verified.leaf == chain.leaf.certificate
    assert verified.issuer == chain.intermediate.certificate
    assert [s.state for s in verified.revocation] == [RevocationState.GOOD] * 2
    assert verified.warnings == ()
    assert verified.validated_at == AT


def test_rsa_chain_and_naive_time_taken_as_utc() -> None:
    chain = build_chain("rsa")
    verified = _validator(chain).validate(
        chain.leaf.certificate, chain.intermediates, at=AT.replace(tzinfo=None)
    )
    assert verified.validated_at == AT


Inputs = tuple[ChainValidator, x509.Certificate, tuple[x509.Certificate, ...]]


@dataclass(frozen=True)
class Scenario:
    """Build a chain and the validator inputs that must fail with ``error``."""

    build: Callable[[], Inputs]
    error: type[CertError]


def _with_leaf(**leaf_options: object) -> Callable[[], Inputs]:
    def build() -> Inputs:
        chain = build_chain()
        leaf = make_leaf("Scenario Leaf", chain.intermediate, serial=4242, **leaf_options)  # type: ignore[arg-type]
        return _validator(chain), leaf.certificate, chain.intermediates

    return build


def _untrusted() -> Inputs:
    chain = build_chain()
    stranger = make_ca("Unknown Root")
    return _validator(chain), make_leaf("Stray", stranger).certificate, ()


def _missing_intermediate() -> Inputs:
    chain = build_chain()
    return _validator(chain), chain.leaf.certificate, ()


def _revoked_leaf() -> Inputs:
    chain = build_chain()
    crls = (
        make_crl(chain.root),
        make_crl(chain.intermediate, [Revocation(chain.leaf.certificate.serial_number)]),
    )
    return _validator(chain, crls=crls), chain.leaf.certificate, chain.intermediates


def _revoked_intermediate() -> Inputs:
    chain = build_chain()
    crls = (
        make_crl(chain.root, [Revocation(chain.intermediate.certificate.serial_number)]),
        make_crl(chain.intermediate),
    )
    return _validator(chain, crls=crls), chain.leaf.certificate, chain.intermediates


def _no_crls() -> Inputs:
    chain = build_chain()
    return _validator(chain, crls=()), chain.leaf.certificate, chain.intermediates


def _stale_crl() -> Inputs:
    chain = build_chain()
    crls = (
        make_crl(chain.root),
        make_crl(chain.intermediate, next_update=AT - timedelta(seconds=1)),
    )
    return _validator(chain, crls=crls), chain.leaf.certificate, chain.intermediates


def _crl_signed_by_other_key() -> Inputs:
    chain = build_chain()
    # Same name as the issuing CA, another key: the CRL's signature must not verify.
    impostor = make_ca("Test Issuing CA p256", kind="rsa")
    crls = (make_crl(chain.root), make_crl(impostor))
    return _validator(chain, crls=crls), chain.leaf.certificate, chain.intermediates


def _policy(**changes: object) -> Callable[[], Inputs]:
    def build() -> Inputs:
        chain = build_chain()
        policy = ValidationPolicy().replace(**changes)
        return _validator(chain, policy=policy), chain.leaf.certificate, chain.intermediates

    return build


def _too_deep() -> Inputs:
    chain = build_chain()
    return (
        _validator(chain, policy=ValidationPolicy(max_depth=2)),
        chain.leaf.certificate,
        chain.intermediates,
    )


SCENARIOS = {
    "untrusted-root": Scenario(_untrusted, CertificateUntrusted),
    "missing-intermediate": Scenario(_missing_intermediate, CertificateUntrusted),
    "chain-longer-than-policy": Scenario(_too_deep, CertificateUntrusted),
    "expired-leaf": Scenario(
        _with_leaf(not_before=EPOCH, not_after=AT - timedelta(seconds=1)), CertificateExpired
    ),
    "not-yet-valid-leaf": Scenario(
        _with_leaf(not_before=AT + timedelta(seconds=1)), CertificateNotYetValid
    ),
    "revoked-leaf": Scenario(_revoked_leaf, CertificateRevoked),
    "revoked-intermediate": Scenario(_revoked_intermediate, CertificateRevoked),
    "hard-fail-without-crl": Scenario(_no_crls, RevocationUnavailable),
    "hard-fail-stale-crl": Scenario(_stale_crl, RevocationUnavailable),
    "crl-signed-by-other-key": Scenario(_crl_signed_by_other_key, RevocationUnavailable),
    "no-digital-signature": Scenario(
        _with_leaf(usage=key_usage("key_encipherment")), CertificateUsageInvalid
    ),
    "server-auth-only": Scenario(
        _with_leaf(eku=(ExtendedKeyUsageOID.SERVER_AUTH,)), CertificateUsageInvalid
    ),
    "any-eku-refused-by-policy": Scenario(lambda: _any_eku_refused(), CertificateUsageInvalid),
    "no-eku-refused-by-policy": Scenario(lambda: _no_eku_refused(), CertificateUsageInvalid),
    "other-purpose-required": Scenario(
        _policy(extended_key_usage="1.3.6.1.5.5.7.3.4"), CertificateUsageInvalid
    ),
    "key-cert-sign-on-leaf": Scenario(
        _with_leaf(usage=key_usage("digital_signature", "key_cert_sign")), CertificateUsageInvalid
    ),
}


def _no_eku_refused() -> Inputs:
    chain = build_chain()
    leaf = make_leaf("No EKU", chain.intermediate, serial=78, eku=None)
    policy = ValidationPolicy(allow_missing_extended_key_usage=False)
    return _validator(chain, policy=policy), leaf.certificate, chain.intermediates


def _any_eku_refused() -> Inputs:
    chain = build_chain()
    leaf = make_leaf(
        "Any EKU", chain.intermediate, serial=77, eku=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,)
    )
    policy = ValidationPolicy(allow_any_extended_key_usage=False)
    return _validator(chain, policy=policy), leaf.certificate, chain.intermediates


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_error_codes(scenario: Scenario) -> None:
    validator, leaf, intermediates = scenario.build()
    with pytest.raises(scenario.error) as raised:
        validator.validate(leaf, intermediates, at=AT)
    error = raised.value
    assert error.code == scenario.error.code
    for language in ("zh-CN", "en"):
        assert error.message(language)


def test_revoked_error_carries_reason_and_date() -> None:
    validator, leaf, intermediates = _revoked_leaf()
    with pytest.raises(CertificateRevoked) as raised:
        validator.validate(leaf, intermediates, at=AT)
    assert raised.value.reason == "key_compromise"
    assert raised.value.revoked_at == EPOCH + timedelta(days=10)
    assert "2026-01-11" in raised.value.message("en")


def test_expired_error_carries_not_after() -> None:
    validator, leaf, intermediates = _with_leaf(not_after=AT - timedelta(days=1))()
    with pytest.raises(CertificateExpired) as raised:
        validator.validate(leaf, intermediates, at=AT)
    assert raised.value.not_after == AT - timedelta(days=1)


def test_soft_fail_allows_unavailable_and_warns() -> None:
    chain = build_chain()
    policy = ValidationPolicy(revocation=RevocationMode.SOFT_FAIL)
    verified = _validator(chain, crls=(), policy=policy).validate(
        chain.leaf.certificate, chain.intermediates, at=AT
    )
    assert [s.state for s in verified.revocation] == [RevocationState.UNAVAILABLE] * 2
    assert len(verified.warnings) == 2


def test_soft_fail_still_refuses_revoked() -> None:
    chain = build_chain()
    crls = (make_crl(chain.intermediate, [Revocation(chain.leaf.certificate.serial_number)]),)
    policy = ValidationPolicy(revocation=RevocationMode.SOFT_FAIL)
    with pytest.raises(CertificateRevoked):
        _validator(chain, crls=crls, policy=policy).validate(
            chain.leaf.certificate, chain.intermediates, at=AT
        )


def test_off_checks_nothing() -> None:
    chain = build_chain()
    policy = ValidationPolicy(revocation=RevocationMode.OFF)
    crls = (make_crl(chain.intermediate, [Revocation(chain.leaf.certificate.serial_number)]),)
    verified = _validator(chain, crls=crls, policy=policy).validate(
        chain.leaf.certificate, chain.intermediates, at=AT
    )
    assert [s.state for s in verified.revocation] == [RevocationState.NOT_CHECKED] * 2


def test_each_anchor_has_its_own_policy() -> None:
    strict, lenient = build_chain("p256"), build_chain("rsa")
    store = CrlStore()
    store.add(make_crl(strict.root), source="strict-root")
    store.add(make_crl(strict.intermediate), source="strict-issuing")
    validator = ChainValidator(
        [
            TrustAnchor(strict.root.certificate, ValidationPolicy()),
            TrustAnchor(lenient.root.certificate, ValidationPolicy(revocation=RevocationMode.OFF)),
        ],
        revocation=RevocationChecker(crls=store),
    )
    hard = validator.validate(strict.leaf.certificate, strict.intermediates, at=AT)
    off = validator.validate(lenient.leaf.certificate, lenient.intermediates, at=AT)
    assert hard.anchor.policy.revocation is RevocationMode.HARD_FAIL
    assert off.anchor.policy.revocation is RevocationMode.OFF


def test_leaf_without_subject_alt_name_or_eku_is_accepted() -> None:
    chain = build_chain()
    leaf = make_leaf("No EKU", chain.intermediate, serial=99, eku=None)
    verified = _validator(chain).validate(leaf.certificate, chain.intermediates, at=AT)
    assert verified.leaf == leaf.certificate


def test_directory_name_constraints_are_enforced() -> None:
    permitted = x509.NameConstraints(
        permitted_subtrees=[
            x509.DirectoryName(x509.Name([x509.NameAttribute(x509.oid.NameOID.COUNTRY_NAME, "CN")]))
        ],
        excluded_subtrees=None,
    )
    root = make_ca("NC Root")
    # The constrained CA is built by hand: the builder helpers do not add nameConstraints.
    from tests.certs.chains import _builder, _sign, name, private_key

    key = private_key("p256", "NC Issuing")
    constrained = _sign(
        _builder(
            name("NC Issuing"),
            root,
            key,
            serial=5,
            not_before=EPOCH,
            not_after=EPOCH + timedelta(days=3650),
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(permitted, True),
        root.key,
    )
    from tests.certs.chains import Issued

    issuing = Issued(constrained, key)
    inside = make_leaf("Inside", issuing, serial=10)  # subject C=CN: permitted
    validator = ChainValidator(
        [TrustAnchor(root.certificate, ValidationPolicy(revocation=RevocationMode.OFF))]
    )
    validator.validate(inside.certificate, [constrained], at=AT)

    outside_key = private_key("p256", "outside")
    outside = _sign(
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COUNTRY_NAME, "US")]))
        .issuer_name(constrained.subject)
        .public_key(outside_key.public_key())
        .serial_number(11)
        .not_valid_before(EPOCH)
        .not_valid_after(EPOCH + timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(outside_key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False),
        key,
    )
    with pytest.raises(CertificateUntrusted):
        validator.validate(outside, [constrained], at=AT)


class _StubOcsp:
    """An OCSP source answering a fixed status (the checker's ordering is under test here;
    the real OcspClient is tested against `openssl ocsp` in test_ocsp.py)."""

    def __init__(self, state: RevocationState) -> None:
        self.state = state
        self.calls: list[str | None] = []

    def status(
        self,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        *,
        at: datetime,
        responder_url: str | None = None,
        sm2_signer_id: bytes = b"1234567812345678",
    ) -> RevocationStatus:
        self.calls.append(responder_url)
        if self.state is RevocationState.REVOKED:
            return RevocationStatus(
                self.state, source="ocsp", reason="superseded", revoked_at=EPOCH
            )
        return RevocationStatus(self.state, source="ocsp")


def test_fresh_crl_answers_before_ocsp() -> None:
    chain = build_chain(ocsp_url="http://ocsp.test/")
    ocsp = _StubOcsp(RevocationState.REVOKED)
    store = CrlStore()
    store.add(make_crl(chain.root), source="root")
    store.add(make_crl(chain.intermediate), source="issuing")
    validator = ChainValidator([chain.anchor], revocation=RevocationChecker(crls=store, ocsp=ocsp))
    validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
    assert ocsp.calls == []


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (RevocationState.GOOD, None),
        (RevocationState.REVOKED, CertificateRevoked),
        (RevocationState.UNAVAILABLE, RevocationUnavailable),
        (RevocationState.UNKNOWN, RevocationUnavailable),
    ],
)
def test_ocsp_used_when_no_crl(state: RevocationState, error: type[CertError] | None) -> None:
    chain = build_chain(ocsp_url="http://ocsp.test/")
    ocsp = _StubOcsp(state)
    store = CrlStore()
    store.add(make_crl(chain.root), source="root")
    validator = ChainValidator([chain.anchor], revocation=RevocationChecker(crls=store, ocsp=ocsp))
    if error is None:
        verified = validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
        assert verified.revocation[0].source == "ocsp"
    else:
        with pytest.raises(error):
            validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
    assert ocsp.calls == ["http://ocsp.test/"]


def test_policy_ocsp_responder_overrides_aia() -> None:
    chain = build_chain()
    ocsp = _StubOcsp(RevocationState.GOOD)
    store = CrlStore()
    store.add(make_crl(chain.root), source="root")
    policy = ValidationPolicy(ocsp_responder="http://responder.test/")
    validator = ChainValidator(
        [TrustAnchor(chain.root.certificate, policy)],
        revocation=RevocationChecker(crls=store, ocsp=ocsp),
    )
    validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
    assert ocsp.calls == ["http://responder.test/"]


def test_real_ocsp_client_satisfies_the_checker_protocol() -> None:
    ocsp = pytest.importorskip("certs.revocation.ocsp")
    from certs.fetch import OfflineFetcher

    client = ocsp.OcspClient(OfflineFetcher())
    chain = build_chain(ocsp_url="http://ocsp.test/")
    store = CrlStore()
    store.add(make_crl(chain.root), source="root")
    soft = ValidationPolicy(revocation=RevocationMode.SOFT_FAIL)
    validator = ChainValidator(
        [TrustAnchor(chain.root.certificate, soft)],
        revocation=RevocationChecker(crls=store, ocsp=client),
    )
    verified = validator.validate(chain.leaf.certificate, chain.intermediates, at=AT)
    assert verified.revocation[0].state is RevocationState.UNAVAILABLE
    assert verified.warnings
