"""Mapping rules: which identity of a validated certificate finds which account.

A ``MappingRule`` belongs to one issuer (it sits in ``TrustAnchor.mapping_rule``). Resolution
(``resolve_account``) tries, in order:

1. explicit bindings — the certificate's SHA-256 thumbprint, then its issuer+serial;
2. the rule's lookups, in the order written, e.g. ``enterprise: unified_social_credit_code``,
   then ``person: id_card_number``, then ``person: email``.

The first step that finds any account decides: exactly one account is the match; two or more
distinct accounts raise ``AccountAmbiguous`` (never a guess); when no step finds one,
``AccountNotFound``. A field the certificate lacks, or whose identifier failed its checksum, is
skipped — invalid identifiers are never looked up. Binding an account to a stable identifier
(unified social credit code, ID-card number, CA entity identifier) rather than to a thumbprint or
serial lets a renewed certificate keep working.

The account store belongs to the gateway; this module sees it through ``AccountDirectory``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from certs.chain import VerifiedChain
from certs.errors import AccountAmbiguous, AccountNotFound
from certs.identifiers import mask_identifier
from certs.identity import (
    SUBJECT_SERIAL_NUMBER_MEANINGS,
    CertificateIdentity,
    IdentityProfile,
    compile_cn_pattern,
    extract_identity,
)


class AccountKind(StrEnum):
    PERSON = "person"
    ENTERPRISE = "enterprise"


class BindingKind(StrEnum):
    """Explicit certificate bindings an operator or user made (``certgate account bind``)."""

    SHA256 = "sha256"  # CertificateIdentity.sha256
    ISSUER_SERIAL = "issuer_serial"  # CertificateIdentity.issuer_serial


class IdentityField(StrEnum):
    """Identity fields a lookup may use. Names (CN, holder name) are not identifiers."""

    UNIFIED_SOCIAL_CREDIT_CODE = "unified_social_credit_code"
    ID_CARD_NUMBER = "id_card_number"
    ORGANIZATION_CODE = "organization_code"
    CA_ENTITY_ID = "ca_entity_id"
    SUBJECT_SERIAL_NUMBER = "subject_serial_number"
    EMAIL = "email"
    UPN = "upn"
    SUBJECT_DN = "subject_dn"


def _one(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


# The values of each field a lookup tries (several for e-mail and UPN).
IDENTITY_FIELD_VALUES: Mapping[IdentityField, Callable[[CertificateIdentity], tuple[str, ...]]] = {
    IdentityField.UNIFIED_SOCIAL_CREDIT_CODE: lambda i: _one(i.unified_social_credit_code),
    IdentityField.ID_CARD_NUMBER: lambda i: _one(i.id_card_number),
    IdentityField.ORGANIZATION_CODE: lambda i: _one(i.organization_code),
    IdentityField.CA_ENTITY_ID: lambda i: _one(i.ca_entity_id),
    IdentityField.SUBJECT_SERIAL_NUMBER: lambda i: _one(i.subject_serial_number),
    IdentityField.EMAIL: lambda i: i.emails,
    IdentityField.UPN: lambda i: i.upns,
    IdentityField.SUBJECT_DN: lambda i: _one(i.subject_dn),
}

BINDING_VALUES: Mapping[BindingKind, Callable[[CertificateIdentity], str]] = {
    BindingKind.SHA256: lambda i: i.sha256,
    BindingKind.ISSUER_SERIAL: lambda i: i.issuer_serial,
}


@dataclass(frozen=True)
class AccountRef:
    kind: AccountKind
    account_id: str


class AccountDirectory(Protocol):
    """The gateway's account store, as mapping sees it."""

    def look_up(self, probes: Sequence[Probe]) -> Mapping[Probe, set[AccountRef]]:
        """The accounts each probe finds (a probe that finds none may be left out).

        ``resolve_account`` asks once per certificate with every probe its rule could need, so
        a database answers them in one round trip; the precedence between them is decided
        here, not by the store. Values come in CertificateIdentity's forms: identifiers
        upper-case, e-mail and UPN lower-case, subject DN canonical
        (``certs.identity.canonical_dn``).
        """
        ...


@dataclass(frozen=True)
class Lookup:
    account_kind: AccountKind
    identity_field: IdentityField

    def __str__(self) -> str:
        return f"{self.account_kind}: {self.identity_field}"


@dataclass(frozen=True)
class Probe:
    """One look-up: accounts with an explicit binding of this kind and value, or accounts of
    the lookup's kind whose identity field equals the value."""

    step: BindingKind | Lookup
    value: str


class MappingRuleError(ValueError):
    """A mapping rule in the configuration is wrong; the message names the field at fault."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def _choice(enum: type[StrEnum], value: Any, where: str, what: str) -> Any:
    try:
        return enum(value.strip() if isinstance(value, str) else value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise MappingRuleError(
            where, f"unknown {what} {value!r}; expected one of {allowed}"
        ) from None


def _parse_lookup(entry: Any, where: str) -> Lookup:
    """``"person: email"`` or ``{account = "person", identity = "email"}``."""
    if isinstance(entry, str):
        account, sep, identity = entry.partition(":")
        if not sep:
            raise MappingRuleError(where, f"{entry!r} is not '<account kind>: <identity field>'")
    elif isinstance(entry, Mapping):
        unknown = set(entry) - {"account", "identity"}
        if unknown:
            raise MappingRuleError(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        if "account" not in entry or "identity" not in entry:
            raise MappingRuleError(where, "needs both 'account' and 'identity'")
        account, identity = entry["account"], entry["identity"]
    else:
        raise MappingRuleError(where, "a lookup is 'kind: field' or a table {account, identity}")
    return Lookup(
        _choice(AccountKind, account, f"{where}.account", "account kind"),
        _choice(IdentityField, identity, f"{where}.identity", "identity field"),
    )


_RULE_KEYS = ("lookups", "cn_patterns", "subject_serial_number", "explicit_bindings")


@dataclass(frozen=True)
class MappingRule:
    """How certificates from one issuer find their account."""

    lookups: tuple[Lookup, ...] = ()
    profile: IdentityProfile = IdentityProfile()
    # Try thumbprint and issuer+serial bindings before the lookups.
    explicit_bindings: bool = True

    def __post_init__(self) -> None:
        if not self.lookups and not self.explicit_bindings:
            raise ValueError("a mapping rule needs lookups or explicit bindings")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "mapping") -> MappingRule:
        """Parse the TOML-friendly form::

            [trust_anchors.mapping]
            lookups = ["enterprise: unified_social_credit_code", "person: id_card_number"]
            cn_patterns = ["cfca-person"]              # preset names or regexes
            subject_serial_number = "unified_social_credit_code"
            explicit_bindings = true

        Raises ``MappingRuleError`` naming the field at fault (``mapping.lookups[1].identity``).
        """
        if not isinstance(data, Mapping):
            raise MappingRuleError(where, "a mapping rule is a table")
        unknown = set(data) - set(_RULE_KEYS)
        if unknown:
            raise MappingRuleError(
                where,
                f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                f"expected {', '.join(_RULE_KEYS)}",
            )
        raw_lookups = data.get("lookups", [])
        if isinstance(raw_lookups, str) or not isinstance(raw_lookups, Sequence):
            raise MappingRuleError(f"{where}.lookups", "a list of lookups")
        lookups = tuple(
            _parse_lookup(entry, f"{where}.lookups[{n}]") for n, entry in enumerate(raw_lookups)
        )
        for n, lookup in enumerate(lookups):
            if lookup in lookups[:n]:
                raise MappingRuleError(f"{where}.lookups[{n}]", f"'{lookup}' is listed twice")

        raw_patterns = data.get("cn_patterns", [])
        if isinstance(raw_patterns, str) or not isinstance(raw_patterns, Sequence):
            raise MappingRuleError(f"{where}.cn_patterns", "a list of regular expressions")
        patterns = []
        for n, pattern in enumerate(raw_patterns):
            if not isinstance(pattern, str):
                raise MappingRuleError(f"{where}.cn_patterns[{n}]", "a regular expression")
            try:
                patterns.append(compile_cn_pattern(pattern))
            except ValueError as exc:
                raise MappingRuleError(f"{where}.cn_patterns[{n}]", str(exc)) from None

        holds = data.get("subject_serial_number")
        if holds is not None and holds not in SUBJECT_SERIAL_NUMBER_MEANINGS:
            raise MappingRuleError(
                f"{where}.subject_serial_number",
                f"unknown meaning {holds!r}; expected one of "
                f"{', '.join(SUBJECT_SERIAL_NUMBER_MEANINGS)}",
            )
        explicit_bindings = data.get("explicit_bindings", True)
        if not isinstance(explicit_bindings, bool):
            raise MappingRuleError(f"{where}.explicit_bindings", "true or false")
        if not lookups and not explicit_bindings:
            raise MappingRuleError(
                f"{where}.lookups", "empty, and explicit bindings are off: nothing could match"
            )
        return cls(lookups, IdentityProfile(tuple(patterns), holds), explicit_bindings)


@dataclass(frozen=True)
class AccountMatch:
    """The account a certificate maps to, and what matched (for the audit trail)."""

    account: AccountRef
    matched_by: str  # "sha256", "issuer_serial" or a lookup such as "person: id_card_number"
    matched_value: str
    identity: CertificateIdentity
    trust_anchor: str

    def to_audit(self) -> dict[str, Any]:
        """Log-safe: identifiers masked with ``mask_identifier``."""
        is_binding = self.matched_by in set(BindingKind)
        return {
            "account_id": self.account.account_id,
            "account_kind": str(self.account.kind),
            "matched_by": self.matched_by,
            "matched_value": self.matched_value
            if is_binding
            else mask_identifier(self.matched_value),
            "sha256": self.identity.sha256,
            "issuer_serial": self.identity.issuer_serial,
            "trust_anchor": self.trust_anchor,
        }

    def __repr__(self) -> str:
        return f"AccountMatch({self.to_audit()!r})"


def _decide(
    accounts: set[AccountRef], step: str, value: str, identity: CertificateIdentity, anchor: str
) -> AccountMatch | None:
    if not accounts:
        return None
    if len(accounts) > 1:
        raise AccountAmbiguous(
            f"{len(accounts)} accounts match {step} under trust anchor {anchor!r}",
            matched_by=step,
            account_count=len(accounts),
        )
    (account,) = accounts
    return AccountMatch(account, step, value, identity, anchor)


def resolve_account(
    chain: VerifiedChain,
    rule: MappingRule,
    directory: AccountDirectory,
    *,
    leaf_sha256: str | None = None,
) -> AccountMatch:
    """The one account ``chain``'s leaf maps to under ``rule``.

    ``leaf_sha256``: the leaf's thumbprint (hex), when the caller has computed it already.

    Raises ``AccountNotFound`` when nothing matches and ``AccountAmbiguous`` when the deciding
    step finds more than one account.
    """
    if not isinstance(chain, VerifiedChain):
        raise TypeError("resolve_account takes a VerifiedChain from the path validator")
    identity = extract_identity(chain.leaf, rule.profile, issuer=chain.issuer, sha256=leaf_sha256)
    anchor = chain.anchor.display_name

    # Every step's probes, in the order they decide; invalid identifiers never become probes.
    steps: list[tuple[str, list[Probe]]] = []
    if rule.explicit_bindings:
        for binding, read in BINDING_VALUES.items():
            steps.append((str(binding), [Probe(binding, read(identity))]))
    for lookup in rule.lookups:
        values = IDENTITY_FIELD_VALUES[lookup.identity_field](identity)
        steps.append((str(lookup), [Probe(lookup, value) for value in values]))
    probes = [probe for _step, step_probes in steps for probe in step_probes]
    found = directory.look_up(probes) if probes else {}

    for step, step_probes in steps:
        accounts: set[AccountRef] = set()
        matched_value = ""
        for probe in step_probes:
            hits = found.get(probe)
            if hits and not matched_value:
                matched_value = probe.value
            accounts |= hits or set()
        match = _decide(accounts, step, matched_value, identity, anchor)
        if match is not None:
            return match

    tried = ["sha256", "issuer_serial"] if rule.explicit_bindings else []
    tried += [str(lookup) for lookup in rule.lookups]
    raise AccountNotFound(
        f"no account under trust anchor {anchor!r}; tried {', '.join(tried)}"
        + (f"; {len(identity.invalid)} invalid identifier(s) skipped" if identity.invalid else "")
    )
