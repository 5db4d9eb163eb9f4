"""Mapping a validated chain to exactly one account.

The chains here are wrapped with ``certs.chain.make_verified_chain`` directly: these tests are
about mapping, not path validation, and building a ``VerifiedChain`` any other way would need the
validator. Production code gets its chains only from ``certs.validation``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs.chain import make_verified_chain
from certs.errors import AccountAmbiguous, AccountNotFound
from certs.identity import OID_ID_CARD_NUMBER, OID_ORGANIZATION_CODE, extract_identity
from certs.mapping import (
    AccountKind,
    AccountRef,
    BindingKind,
    IdentityField,
    Lookup,
    MappingRule,
    MappingRuleError,
    Probe,
    resolve_account,
)
from certs.policy import TrustAnchor
from tests.certs.test_identity import (
    AT,
    CA_CERTIFICATE,
    DER_STRING,
    ID_NUMBER,
    OTHER_ID_NUMBER,
    OTHER_USCC,
    USCC,
    issue_certificate,
    subject,
)

PERSON = AccountKind.PERSON
ENTERPRISE = AccountKind.ENTERPRISE

ZHANG_SAN = AccountRef(PERSON, "p-1")
LI_SI = AccountRef(PERSON, "p-2")
BUILDER_CO = AccountRef(ENTERPRISE, "e-1")
OTHER_CO = AccountRef(ENTERPRISE, "e-2")

RULE = MappingRule.from_dict(
    {
        "lookups": [
            "enterprise: unified_social_credit_code",
            "person: id_card_number",
            "person: email",
        ]
    }
)


@dataclass
class InMemoryDirectory:
    """The AccountDirectory protocol over dicts; records every query it answers."""

    bindings: dict[tuple[str, str], set[AccountRef]] = field(default_factory=dict)
    identifiers: dict[tuple[str, str, str], set[AccountRef]] = field(default_factory=dict)
    queries: list[tuple[str, ...]] = field(default_factory=list)

    def bind(self, binding: BindingKind, value: str, account: AccountRef) -> None:
        self.bindings.setdefault((binding, value), set()).add(account)

    def register(self, account: AccountRef, identity_field: IdentityField, value: str) -> None:
        self.identifiers.setdefault((account.kind, identity_field, value), set()).add(account)

    def look_up(self, probes: Sequence[Probe]) -> dict[Probe, set[AccountRef]]:
        found = {}
        for probe in probes:
            if isinstance(probe.step, BindingKind):
                self.queries.append((str(probe.step), probe.value))
                found[probe] = set(self.bindings.get((probe.step, probe.value), set()))
            else:
                kind, identity_field = probe.step.account_kind, probe.step.identity_field
                self.queries.append((str(kind), str(identity_field), probe.value))
                found[probe] = set(self.identifiers.get((kind, identity_field, probe.value), set()))
        return found

    def queried_values(self) -> Iterable[str]:
        return (query[-1] for query in self.queries)


def verified(certificate: x509.Certificate, rule: MappingRule = RULE):
    anchor = TrustAnchor(CA_CERTIFICATE, name="Identity Test CA", mapping_rule=rule)
    return make_verified_chain((certificate, CA_CERTIFICATE), anchor, AT)


def person_certificate(id_number: str = ID_NUMBER, **kwargs) -> x509.Certificate:
    name = subject((NameOID.COMMON_NAME, "张三"), (OID_ID_CARD_NUMBER, id_number))
    return issue_certificate(name, **kwargs)


def enterprise_certificate(uscc: str = USCC, **kwargs) -> x509.Certificate:
    der = DER_STRING["PrintableString"](uscc)
    return issue_certificate(
        subject((NameOID.ORGANIZATION_NAME, "某某建设有限公司")),
        extensions=[(OID_ORGANIZATION_CODE, der)],
        **kwargs,
    )


# --- parsing rules ----------------------------------------------------------------------------


def test_rule_parses_both_lookup_spellings_and_profile():
    rule = MappingRule.from_dict(
        {
            "lookups": [
                "enterprise: unified_social_credit_code",
                {"account": "person", "identity": "id_card_number"},
            ],
            "cn_patterns": ["cfca-person"],
            "subject_serial_number": "unified_social_credit_code",
            "explicit_bindings": False,
        }
    )
    assert rule.lookups == (
        Lookup(ENTERPRISE, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE),
        Lookup(PERSON, IdentityField.ID_CARD_NUMBER),
    )
    assert len(rule.profile.cn_patterns) == 1
    assert rule.profile.subject_serial_number_holds == "unified_social_credit_code"
    assert rule.explicit_bindings is False


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        ({"lookups": ["person: uscc"]}, "mapping.lookups[0].identity", "unknown identity field"),
        ({"lookups": ["robot: email"]}, "mapping.lookups[0].account", "unknown account kind"),
        ({"lookups": ["person email"]}, "mapping.lookups[0]", "is not"),
        ({"lookups": [{"account": "person"}]}, "mapping.lookups[0]", "needs both"),
        (
            {"lookups": [{"account": "person", "identity": "email", "x": 1}]},
            "mapping.lookups[0]",
            "unknown key",
        ),
        ({"lookups": [42]}, "mapping.lookups[0]", "a lookup is"),
        ({"lookups": "person: email"}, "mapping.lookups", "a list"),
        (
            {"lookups": ["person: email", "person:email"]},
            "mapping.lookups[1]",
            "listed twice",
        ),
        ({"lookups": ["person: common_name"]}, "mapping.lookups[0].identity", "unknown"),
        ({"cn_patterns": ["(?P<id>x)"]}, "mapping.cn_patterns[0]", "unknown named group"),
        ({"cn_patterns": ["("]}, "mapping.cn_patterns[0]", "regular expression"),
        ({"cn_patterns": [1]}, "mapping.cn_patterns[0]", "regular expression"),
        ({"subject_serial_number": "phone"}, "mapping.subject_serial_number", "unknown meaning"),
        ({"explicit_bindings": "yes"}, "mapping.explicit_bindings", "true or false"),
        ({"explicit_bindings": False}, "mapping.lookups", "nothing could match"),
        ({"lookup": []}, "mapping", "unknown key"),
    ],
)
def test_bad_rules_name_the_field_at_fault(data, where, problem):
    with pytest.raises(MappingRuleError) as raised:
        MappingRule.from_dict(data)
    assert raised.value.where == where
    assert problem in raised.value.problem
    assert str(raised.value).startswith(where + ": ")


def test_rule_errors_carry_the_callers_location():
    with pytest.raises(MappingRuleError, match=r"^trust_anchors\[2\]\.mapping\.lookups\[0\]"):
        MappingRule.from_dict({"lookups": ["x: y"]}, where="trust_anchors[2].mapping")


# --- resolution -------------------------------------------------------------------------------


def test_enterprise_certificate_finds_its_enterprise():
    directory = InMemoryDirectory()
    directory.register(BUILDER_CO, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE, USCC)
    match = resolve_account(verified(enterprise_certificate()), RULE, directory)
    assert match.account == BUILDER_CO
    assert match.matched_by == "enterprise: unified_social_credit_code"
    assert match.matched_value == USCC
    assert match.trust_anchor == "Identity Test CA"


def test_thumbprint_binding_comes_before_lookups():
    certificate = person_certificate()
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, ID_NUMBER)
    directory.bind(BindingKind.SHA256, extract_identity(certificate).sha256, LI_SI)
    match = resolve_account(verified(certificate), RULE, directory)
    assert (match.account, match.matched_by) == (LI_SI, "sha256")


def test_issuer_serial_binding_comes_after_thumbprint_and_before_lookups():
    certificate = person_certificate()
    identity = extract_identity(certificate)
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, ID_NUMBER)
    directory.bind(BindingKind.ISSUER_SERIAL, identity.issuer_serial, LI_SI)
    match = resolve_account(verified(certificate), RULE, directory)
    assert (match.account, match.matched_by) == (LI_SI, "issuer_serial")
    assert directory.queries[:2] == [
        ("sha256", identity.sha256),
        ("issuer_serial", identity.issuer_serial),
    ]


def test_bindings_are_skipped_when_the_rule_turns_them_off():
    certificate = person_certificate()
    directory = InMemoryDirectory()
    directory.bind(BindingKind.SHA256, extract_identity(certificate).sha256, LI_SI)
    directory.register(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, ID_NUMBER)
    rule = MappingRule.from_dict(
        {"lookups": ["person: id_card_number"], "explicit_bindings": False}
    )
    assert resolve_account(verified(certificate, rule), rule, directory).account == ZHANG_SAN


def test_lookups_are_tried_in_order_and_the_first_hit_decides():
    # A staff certificate carries both the enterprise's USCC and the person's ID number.
    name = subject(
        (NameOID.COMMON_NAME, "张三"),
        (OID_ID_CARD_NUMBER, ID_NUMBER),
        (OID_ORGANIZATION_CODE, USCC),
    )
    certificate = issue_certificate(name)
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, ID_NUMBER)
    directory.register(BUILDER_CO, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE, USCC)
    assert resolve_account(verified(certificate), RULE, directory).account == BUILDER_CO
    person_first = MappingRule.from_dict(
        {"lookups": ["person: id_card_number", "enterprise: unified_social_credit_code"]}
    )
    assert resolve_account(verified(certificate), person_first, directory).account == ZHANG_SAN


def test_a_renewed_certificate_keeps_finding_the_account_bound_to_its_identifier():
    original = enterprise_certificate(serial=0x1001, key=ec.generate_private_key(ec.SECP256R1()))
    renewed = enterprise_certificate(serial=0x2002, key=ec.generate_private_key(ec.SECP256R1()))
    directory = InMemoryDirectory()
    directory.register(BUILDER_CO, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE, USCC)
    # A binding to the old certificate's serial does not follow the renewal ...
    directory.bind(BindingKind.ISSUER_SERIAL, extract_identity(original).issuer_serial, OTHER_CO)
    assert resolve_account(verified(original), RULE, directory).account == OTHER_CO
    # ... the stable identifier does.
    match = resolve_account(verified(renewed), RULE, directory)
    assert (match.account, match.matched_by) == (BUILDER_CO, RULE.lookups[0].__str__())
    assert extract_identity(original).sha256 != extract_identity(renewed).sha256


def test_two_accounts_for_one_identifier_is_ambiguous():
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, ID_NUMBER)
    directory.register(LI_SI, IdentityField.ID_CARD_NUMBER, ID_NUMBER)
    with pytest.raises(AccountAmbiguous) as raised:
        resolve_account(verified(person_certificate()), RULE, directory)
    assert raised.value.code == "account_ambiguous"
    assert ID_NUMBER not in str(raised.value)


def test_two_emails_finding_two_accounts_is_ambiguous():
    certificate = issue_certificate(
        alternative_names=[x509.RFC822Name("a@example.cn"), x509.RFC822Name("b@example.cn")]
    )
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.EMAIL, "a@example.cn")
    directory.register(LI_SI, IdentityField.EMAIL, "b@example.cn")
    with pytest.raises(AccountAmbiguous):
        resolve_account(verified(certificate), RULE, directory)


def test_two_bindings_of_one_thumbprint_is_ambiguous():
    certificate = person_certificate()
    sha256 = extract_identity(certificate).sha256
    directory = InMemoryDirectory()
    directory.bind(BindingKind.SHA256, sha256, ZHANG_SAN)
    directory.bind(BindingKind.SHA256, sha256, LI_SI)
    with pytest.raises(AccountAmbiguous):
        resolve_account(verified(certificate), RULE, directory)


def test_the_same_account_found_through_two_emails_is_one_match():
    certificate = issue_certificate(
        alternative_names=[x509.RFC822Name("a@example.cn"), x509.RFC822Name("b@example.cn")]
    )
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.EMAIL, "a@example.cn")
    directory.register(ZHANG_SAN, IdentityField.EMAIL, "b@example.cn")
    match = resolve_account(verified(certificate), RULE, directory)
    assert (match.account, match.matched_value) == (ZHANG_SAN, "a@example.cn")


NOT_FOUND = [
    # (scenario, certificate factory, accounts registered)
    ("no account has the identifier", lambda: person_certificate(),
     [(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, OTHER_ID_NUMBER)]),
    ("identifier registered for the other kind", lambda: enterprise_certificate(),
     [(ZHANG_SAN, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE, USCC)]),
    ("certificate carries no identifier the rule uses", lambda: issue_certificate(),
     [(BUILDER_CO, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE, USCC)]),
    ("ID number fails its checksum", lambda: person_certificate("110105194912310021"),
     [(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, "110105194912310021")]),
    ("USCC fails its checksum", lambda: enterprise_certificate("91110000600037341M"),
     [(BUILDER_CO, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE, "91110000600037341M")]),
    ("other enterprise's USCC", lambda: enterprise_certificate(OTHER_USCC),
     [(BUILDER_CO, IdentityField.UNIFIED_SOCIAL_CREDIT_CODE, USCC)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "make_certificate", "accounts"),
    NOT_FOUND,
    ids=[row[0] for row in NOT_FOUND],
)
def test_account_not_found(scenario, make_certificate, accounts):
    directory = InMemoryDirectory()
    for account, identity_field, value in accounts:
        directory.register(account, identity_field, value)
    with pytest.raises(AccountNotFound) as raised:
        resolve_account(verified(make_certificate()), RULE, directory)
    assert raised.value.code == "account_not_found", scenario


@pytest.mark.parametrize("bad", ["110105194912310021", "91110000600037341M"])
def test_invalid_identifiers_are_never_looked_up(bad):
    name = subject(
        (NameOID.COMMON_NAME, "x"), (OID_ID_CARD_NUMBER, bad), (OID_ORGANIZATION_CODE, bad)
    )
    directory = InMemoryDirectory()
    with pytest.raises(AccountNotFound):
        resolve_account(verified(issue_certificate(name)), RULE, directory)
    assert bad not in set(directory.queried_values())
    assert len(directory.queries) == 2  # the two bindings only


def test_cfca_cn_rule_maps_through_the_cn():
    rule = MappingRule.from_dict(
        {"lookups": ["person: id_card_number"], "cn_patterns": ["cfca-person"]}
    )
    certificate = issue_certificate(
        subject((NameOID.COMMON_NAME, f"041@0{ID_NUMBER}@张三@00000001"))
    )
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, ID_NUMBER)
    assert resolve_account(verified(certificate, rule), rule, directory).account == ZHANG_SAN
    with pytest.raises(AccountNotFound):
        resolve_account(verified(certificate), RULE, directory)


def test_subject_dn_lookup_uses_the_canonical_form():
    certificate = issue_certificate(subject((NameOID.COMMON_NAME, "Zhang  SAN")))
    rule = MappingRule.from_dict({"lookups": ["person: subject_dn"]})
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.SUBJECT_DN, "cn=zhang san")
    assert resolve_account(verified(certificate, rule), rule, directory).account == ZHANG_SAN


def test_only_a_verified_chain_is_mapped():
    with pytest.raises(TypeError, match="VerifiedChain"):
        resolve_account(person_certificate(), RULE, InMemoryDirectory())  # type: ignore[arg-type]


def test_audit_record_masks_identifiers():
    directory = InMemoryDirectory()
    directory.register(ZHANG_SAN, IdentityField.ID_CARD_NUMBER, ID_NUMBER)
    match = resolve_account(verified(person_certificate()), RULE, directory)
    record = match.to_audit()
    assert record["matched_by"] == "person: id_card_number"
    assert record["account_id"] == "p-1"
    assert ID_NUMBER not in str(record)
    assert ID_NUMBER not in repr(match)
