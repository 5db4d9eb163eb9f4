"""Mapping chains the real validator produced from the test PKI's certificates.

Waits for ``certs.validation.ChainValidator``.
"""

from __future__ import annotations

import pytest

from certs.errors import AccountNotFound
from certs.identity import extract_identity
from certs.mapping import (
    AccountKind,
    AccountRef,
    BindingKind,
    IdentityField,
    MappingRule,
    resolve_account,
)
from certs.policy import RevocationMode, TrustAnchor, ValidationPolicy
from tests.certs.test_mapping import InMemoryDirectory
from tests.fixtures_pki import PKI_EPOCH, PKI_VALIDATION_TIME

validation = pytest.importorskip("certs.validation", reason="certs.validation has not landed")
if not hasattr(validation, "ChainValidator"):
    pytest.skip("certs.validation.ChainValidator has not landed", allow_module_level=True)

USCC = "9144030071526726XG"
ENTERPRISE = AccountRef(AccountKind.ENTERPRISE, "e-1")
RULE = MappingRule.from_dict({"lookups": ["enterprise: unified_social_credit_code"]})


@pytest.fixture
def validator(test_pki):
    anchor = TrustAnchor(
        test_pki.root_certificate,
        policy=ValidationPolicy(revocation=RevocationMode.OFF),
        mapping_rule=RULE,
    )
    return validation.ChainValidator([anchor])


def test_renewed_enterprise_certificate_maps_to_the_same_account(test_pki, validator):
    directory = InMemoryDirectory()
    directory.register(ENTERPRISE, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE, USCC)
    first = test_pki.issue("enterprise", "某某建设有限公司", uscc=USCC, at=PKI_EPOCH)
    renewed = test_pki.issue("enterprise", "某某建设有限公司", uscc=USCC, at=PKI_EPOCH)
    for issued in (first, renewed):
        chain = validator.validate(issued.certificate, issued.chain[:1], at=PKI_VALIDATION_TIME)
        match = resolve_account(chain, chain.anchor.mapping_rule, directory)
        assert match.account == ENTERPRISE
        assert match.matched_by == "enterprise: unified_social_credit_code"
    assert first.serial != renewed.serial


def test_a_serial_binding_does_not_follow_the_renewal(test_pki, validator):
    first = test_pki.issue("enterprise", "某某建设有限公司", uscc=USCC, at=PKI_EPOCH)
    renewed = test_pki.issue("enterprise", "某某建设有限公司", uscc=USCC, at=PKI_EPOCH)
    directory = InMemoryDirectory()
    directory.bind(BindingKind.ISSUER_SERIAL, extract_identity(first.certificate).issuer_serial,
                   ENTERPRISE)  # fmt: skip
    rule = MappingRule.from_dict({"lookups": [], "explicit_bindings": True})
    chain = validator.validate(first.certificate, first.chain[:1], at=PKI_VALIDATION_TIME)
    assert resolve_account(chain, rule, directory).account == ENTERPRISE
    renewed_chain = validator.validate(
        renewed.certificate, renewed.chain[:1], at=PKI_VALIDATION_TIME
    )
    with pytest.raises(AccountNotFound):
        resolve_account(renewed_chain, rule, directory)
