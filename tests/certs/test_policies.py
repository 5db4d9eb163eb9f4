"""Certificate policies per trust anchor (RFC 5280 §6.1): what an operator who names a policy gets.

NIST PKITS 4.8-4.12 (test_pkits.py) checks the algorithm; these check the anchor-level contract
on chains made here: a chain without the policy an anchor requires is refused with a message
that says so, the default asks nothing, and a CA's requireExplicitPolicy binds even then.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509

from certs.errors import CertificateUntrusted
from certs.policy import ANY_POLICY, PolicyInputs, RevocationMode, TrustAnchor, ValidationPolicy
from certs.validation import ChainValidator
from tests.certs.chains import AT, EPOCH, Issued, _builder, _sign, key_usage, name, private_key

LOGIN_POLICY = "1.2.156.112559.1.1.1"
OTHER_POLICY = "1.2.156.112559.1.1.2"


def _policies(*oids: str) -> x509.CertificatePolicies:
    return x509.CertificatePolicies(
        [x509.PolicyInformation(x509.ObjectIdentifier(o), None) for o in oids]
    )


def _certificate(
    common_name: str,
    issuer: Issued | None,
    *,
    ca: bool,
    policies: tuple[str, ...] = (),
    require_explicit: int | None = None,
) -> Issued:
    key = private_key("p256", common_name)
    builder = _builder(
        name(common_name),
        issuer,
        key,
        serial=11,
        not_before=EPOCH,
        not_after=EPOCH + timedelta(days=365),
    ).add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    builder = builder.add_extension(
        key_usage("key_cert_sign", "crl_sign") if ca else key_usage("digital_signature"), True
    )
    if policies:
        builder = builder.add_extension(_policies(*policies), False)
    if require_explicit is not None:
        builder = builder.add_extension(x509.PolicyConstraints(require_explicit, None), True)
    return Issued(_sign(builder, issuer.key if issuer else key), key)


def _validate(inputs: PolicyInputs, *, leaf_policy: str | None, ca_requires: int | None = None):
    root = _certificate("Policy Root", None, ca=True)
    ca = _certificate(
        "Policy CA",
        root,
        ca=True,
        policies=(ANY_POLICY,) if leaf_policy else (),
        require_explicit=ca_requires,
    )
    leaf = _certificate(
        "张三 Policy Person", ca, ca=False, policies=(leaf_policy,) if leaf_policy else ()
    )
    policy = ValidationPolicy(revocation=RevocationMode.OFF, certificate_policies=inputs)
    validator = ChainValidator([TrustAnchor(root.certificate, policy)])
    return validator.validate(leaf.certificate, [ca.certificate], at=AT)


REQUIRE_LOGIN_POLICY = PolicyInputs(
    user_initial_policy_set=frozenset({LOGIN_POLICY}), initial_explicit_policy=True
)


def test_an_anchor_that_names_a_policy_accepts_a_chain_asserting_it() -> None:
    _validate(REQUIRE_LOGIN_POLICY, leaf_policy=LOGIN_POLICY)


@pytest.mark.parametrize("leaf_policy", [OTHER_POLICY, None])
def test_an_anchor_that_names_a_policy_refuses_other_chains(leaf_policy: str | None) -> None:
    with pytest.raises(CertificateUntrusted, match="no acceptable certificate policy"):
        _validate(REQUIRE_LOGIN_POLICY, leaf_policy=leaf_policy)


def test_the_default_anchor_asks_no_policy() -> None:
    _validate(PolicyInputs(), leaf_policy=None)
    _validate(PolicyInputs(), leaf_policy=OTHER_POLICY)


def test_a_cas_require_explicit_policy_binds_under_the_default_anchor() -> None:
    _validate(PolicyInputs(), leaf_policy=OTHER_POLICY, ca_requires=0)
    with pytest.raises(CertificateUntrusted, match="no acceptable certificate policy"):
        _validate(PolicyInputs(), leaf_policy=None, ca_requires=0)


@pytest.mark.parametrize("oids", [frozenset(), frozenset({"1.2.x"}), frozenset({"01.2"})])
def test_a_malformed_policy_set_is_refused_when_the_policy_is_made(oids: frozenset[str]) -> None:
    with pytest.raises(ValueError):
        PolicyInputs(user_initial_policy_set=oids)
