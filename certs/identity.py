"""Identity extraction: what a certificate says about who holds it.

``extract_identity(certificate, profile)`` reads the subject DN (canonical and display forms), the
CN, e-mail addresses (subject ``emailAddress`` and SAN ``rfc822Name``), SAN UPNs, the serial, the
issuer+serial pair, the SHA-256 thumbprint and the Chinese identity fields.

Chinese CAs carry identifiers in several places, all read here from one table
(``IDENTIFIER_OIDS``): OIDs 1.2.156.10260.4.1.1 (ID-card number) and 1.2.156.10260.4.1.4
(organization code, or unified social credit code in some profiles) either as a non-critical
extension whose value is a DER PrintableString / UTF8String / IA5String, or as a subject attribute;
BJCA's 1.2.156.112562.2.1.1.1 ("SF" + ID-card number); NETCA's entity identifier
1.3.6.1.4.1.18760.1.12.11. Issuer-specific places — identifiers packed into the CN (CFCA) and the
meaning of the subject ``serialNumber`` — are opted into per issuer with an ``IdentityProfile``:
a CN pattern from an issuer that lets subscribers choose their CN would let anyone claim anyone's
ID number, so they are never applied by default. An undeclared subject ``serialNumber`` counts only
when it is unmistakably a unified social credit code or an ID-card number (exactly one checksum
holds; see ``_recognised_serial_number``): the subject DN is what the CA vouches for.

Unified social credit codes, ID-card numbers and organization codes are checksum-validated. A value
that fails is kept in ``CertificateIdentity.invalid`` (masked) and its field stays empty, so an
invalid identifier is never used to find an account. Two different valid values for the same field
are treated the same way: the certificate contradicts itself, and mapping does not guess.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from asn1crypto import core as asn1
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certs.errors import CertificateUntrusted
from certs.extensions import extensions
from certs.identifiers import (
    is_valid_id_card_number,
    is_valid_uscc,
    mask_identifier,
    normalize_identifier,
)

# --- OIDs ---------------------------------------------------------------------------------------

OID_ID_CARD_NUMBER = x509.ObjectIdentifier("1.2.156.10260.4.1.1")
OID_ORGANIZATION_CODE = x509.ObjectIdentifier("1.2.156.10260.4.1.4")
OID_BJCA_PERSON_IDENTIFIER = x509.ObjectIdentifier("1.2.156.112562.2.1.1.1")
OID_NETCA_ENTITY_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.4.1.18760.1.12.11")
OID_UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")

# --- field names (the keys of CertificateIdentity.to_json) --------------------------------------

UNIFIED_SOCIAL_CREDIT_CODE = "unified_social_credit_code"
ID_CARD_NUMBER = "id_card_number"
ORGANIZATION_CODE = "organization_code"
CA_ENTITY_ID = "ca_entity_id"

# --- identifier interpretation ------------------------------------------------------------------

# GB 11714-1997 organization code: 8 characters and a check character.
_ORGANIZATION_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORGANIZATION_CODE_RE = re.compile(r"^[0-9A-Z]{8}-?[0-9X]$")


def organization_code_check_character(first8: str) -> str:
    """The 9th character of a GB 11714 organization code whose first 8 are given."""
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORGANIZATION_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def is_valid_organization_code(code: str) -> bool:
    """True if ``code`` (``12345678-9`` or ``123456789``) has a valid GB 11714 check character."""
    if not _ORGANIZATION_CODE_RE.match(code):
        return False
    compact = code.replace("-", "")
    return organization_code_check_character(compact[:8]) == compact[8]


@dataclass(frozen=True)
class _Found:
    """One identifier read from one place in the certificate, valid or not."""

    field: str
    value: str
    source: str
    reason: str = ""  # empty when valid

    @property
    def valid(self) -> bool:
        return not self.reason


def _nfkc(value: str) -> str:
    """NFKC; ASCII text is already in NFKC, so it skips the Unicode tables."""
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


def _clean(value: str) -> str:
    """Full-width characters to ASCII (NFKC), stripped, upper-cased (a trailing x becomes X)."""
    return normalize_identifier(_nfkc(value))


def _as_id_card_number(value: str, source: str) -> _Found:
    number = _clean(value)
    if is_valid_id_card_number(number):
        return _Found(ID_CARD_NUMBER, number, source)
    if len(number) == 15 and number.isdigit():
        reason = "15-digit first-generation ID-card number (no check digit)"
    else:
        reason = "not a valid GB 11643 ID-card number (format, birth date or check digit)"
    return _Found(ID_CARD_NUMBER, number, source, reason)


def _as_unified_social_credit_code(value: str, source: str) -> _Found:
    code = _clean(value)
    if is_valid_uscc(code):
        return _Found(UNIFIED_SOCIAL_CREDIT_CODE, code, source)
    return _Found(
        UNIFIED_SOCIAL_CREDIT_CODE,
        code,
        source,
        "not a valid GB 32100 unified social credit code (format or check character)",
    )


def _as_organization_code(value: str, source: str) -> _Found:
    code = _clean(value)
    if is_valid_organization_code(code):
        return _Found(ORGANIZATION_CODE, code.replace("-", ""), source)
    return _Found(
        ORGANIZATION_CODE,
        code,
        source,
        "not a valid GB 11714 organization code (format or check character)",
    )


def _as_organization_identifier(value: str, source: str) -> _Found:
    """1.2.156.10260.4.1.4: an 18-character USCC or a 9-character organization code."""
    code = _clean(value)
    if len(code) == 18:
        return _as_unified_social_credit_code(code, source)
    if len(code.replace("-", "")) == 9:
        return _as_organization_code(code, source)
    return _Found(
        UNIFIED_SOCIAL_CREDIT_CODE,
        code,
        source,
        "neither a unified social credit code (18 characters) nor an organization code (9)",
    )


def _as_bjca_person_identifier(value: str, source: str) -> _Found:
    """BJCA writes a document-type prefix, "SF" (身份证) followed by the ID-card number."""
    text = _clean(value)
    if text.startswith("SF"):
        return _as_id_card_number(text[2:], source)
    return _Found(
        ID_CARD_NUMBER,
        text,
        source,
        f"document type {text[:2]!r} is not an ID card (BJCA prefix SF)",
    )


def _as_ca_entity_id(value: str, source: str) -> _Found:
    """A CA-assigned identifier, stable across renewals; no checksum to verify."""
    text = _nfkc(value).strip()
    if text:
        return _Found(CA_ENTITY_ID, text, source)
    return _Found(CA_ENTITY_ID, text, source, "empty")


# How to read an identifier, by what it is said to be.
_Interpreter = Callable[[str, str], _Found]
_Interpret = Callable[[str, str, str], _Found]  # (interpreter name, value, source)
INTERPRETERS: Mapping[str, _Interpreter] = {
    ID_CARD_NUMBER: _as_id_card_number,
    UNIFIED_SOCIAL_CREDIT_CODE: _as_unified_social_credit_code,
    ORGANIZATION_CODE: _as_organization_code,
    "organization_identifier": _as_organization_identifier,
    "bjca_person_identifier": _as_bjca_person_identifier,
    CA_ENTITY_ID: _as_ca_entity_id,
}

# The field an unreadable value is reported under, per interpreter.
FIELD_OF_INTERPRETER: Mapping[str, str] = {
    ID_CARD_NUMBER: ID_CARD_NUMBER,
    UNIFIED_SOCIAL_CREDIT_CODE: UNIFIED_SOCIAL_CREDIT_CODE,
    ORGANIZATION_CODE: ORGANIZATION_CODE,
    "organization_identifier": UNIFIED_SOCIAL_CREDIT_CODE,
    "bjca_person_identifier": ID_CARD_NUMBER,
    CA_ENTITY_ID: CA_ENTITY_ID,
}

# Identity OIDs, read both as a certificate extension and as a subject attribute.
IDENTIFIER_OIDS: Mapping[x509.ObjectIdentifier, str] = {
    OID_ID_CARD_NUMBER: ID_CARD_NUMBER,
    OID_ORGANIZATION_CODE: "organization_identifier",
    OID_BJCA_PERSON_IDENTIFIER: "bjca_person_identifier",
    OID_NETCA_ENTITY_IDENTIFIER: CA_ENTITY_ID,
}


class _Interpretations:
    """Reads each (interpreter, value) once per certificate: the same identifier often sits in
    an extension, a subject attribute and the subject serialNumber, and its checksum need not be
    computed three times. Only the source differs between the readings."""

    def __init__(self) -> None:
        self._read: dict[tuple[str, str], _Found] = {}

    def __call__(self, kind: str, value: str, source: str) -> _Found:
        found = self._read.get((kind, value))
        if found is None:
            found = self._read[kind, value] = INTERPRETERS[kind](value, source)
            return found
        return _Found(found.field, found.value, source, found.reason)


# What the subject serialNumber may be declared to hold, per issuer.
SUBJECT_SERIAL_NUMBER_MEANINGS = (UNIFIED_SOCIAL_CREDIT_CODE, ID_CARD_NUMBER, ORGANIZATION_CODE)

# Named groups a CN pattern may use.
CN_PATTERN_GROUPS = (ID_CARD_NUMBER, UNIFIED_SOCIAL_CREDIT_CODE, ORGANIZATION_CODE, "name")

# CFCA personal certificates: 041@0<ID-card number>@<name>@00000001.
CFCA_PERSON_CN_PATTERN = r"041@0(?P<id_card_number>[0-9]{17}[0-9Xx])@(?P<name>[^@]+)@[0-9]+"

CN_PATTERN_PRESETS: Mapping[str, str] = {"cfca-person": CFCA_PERSON_CN_PATTERN}


def compile_cn_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a CN pattern (or a preset name), checking its named groups.

    Raises ``ValueError`` with a sentence an operator can act on.
    """
    source = CN_PATTERN_PRESETS.get(pattern, pattern)
    try:
        compiled = re.compile(source)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    groups = set(compiled.groupindex)
    unknown = groups - set(CN_PATTERN_GROUPS)
    if unknown:
        raise ValueError(
            f"unknown named group(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(CN_PATTERN_GROUPS)}"
        )
    if not groups & {ID_CARD_NUMBER, UNIFIED_SOCIAL_CREDIT_CODE, ORGANIZATION_CODE}:
        raise ValueError(
            "the pattern names no identifier group "
            "(id_card_number, unified_social_credit_code or organization_code)"
        )
    return compiled


@dataclass(frozen=True)
class IdentityProfile:
    """Issuer-specific places identifiers hide in; part of an issuer's mapping rule.

    ``cn_patterns`` are matched against the whole CN (``re.fullmatch``), first match wins.
    ``subject_serial_number_holds`` says what the subject serialNumber (2.5.4.5) carries for this
    issuer (OV/EV certificates: the unified social credit code); None: it is only reported.
    """

    cn_patterns: tuple[re.Pattern[str], ...] = ()
    subject_serial_number_holds: str | None = None

    def __post_init__(self) -> None:
        holds = self.subject_serial_number_holds
        if holds is not None and holds not in SUBJECT_SERIAL_NUMBER_MEANINGS:
            raise ValueError(
                f"subject serialNumber cannot hold {holds!r}; "
                f"expected one of {', '.join(SUBJECT_SERIAL_NUMBER_MEANINGS)}"
            )

    @classmethod
    def build(
        cls, *, cn_patterns: Iterable[str] = (), subject_serial_number_holds: str | None = None
    ) -> IdentityProfile:
        return cls(tuple(compile_cn_pattern(p) for p in cn_patterns), subject_serial_number_holds)


# --- distinguished names ------------------------------------------------------------------------

# RFC 4514 §3: the keywords every implementation knows; other types are written as dotted OIDs.
_CANONICAL_TYPE_NAMES: Mapping[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "cn",
    NameOID.LOCALITY_NAME: "l",
    NameOID.STATE_OR_PROVINCE_NAME: "st",
    NameOID.ORGANIZATION_NAME: "o",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "ou",
    NameOID.COUNTRY_NAME: "c",
    NameOID.STREET_ADDRESS: "street",
    NameOID.DOMAIN_COMPONENT: "dc",
    NameOID.USER_ID: "uid",
}
_DISPLAY_TYPE_NAMES: dict[x509.ObjectIdentifier, str] = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    OID_ID_CARD_NUMBER: "idCardNumber",
    OID_ORGANIZATION_CODE: "organizationCode",
}
# RFC 4514 §2.4: characters escaped with a backslash (NUL as \00), one table lookup each.
_RFC4514_ESCAPES = {ord(c): "\\" + c for c in '\\"+,;<>'} | {0: "\\00"}


def _escape_rfc4514(value: str) -> str:
    escaped = value.translate(_RFC4514_ESCAPES)
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _matching_form(value: str) -> str:
    """RFC 5280 §7.1 / RFC 4518 preparation, simplified: NFKC, case fold, spaces collapsed."""
    if value.isascii():
        # ASCII is its own NFKC form, and ASCII case folding is lower-casing.
        return " ".join(value.lower().split())
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def _canonical_attribute(attribute: x509.NameAttribute[Any]) -> str:
    oid = attribute.oid
    type_name = _CANONICAL_TYPE_NAMES.get(oid) or oid.dotted_string
    value = attribute.value
    if isinstance(value, bytes):
        return f"{type_name}=#{value.hex()}"
    return f"{type_name}={_escape_rfc4514(_matching_form(value))}"


def canonical_dn(name: x509.Name) -> str:
    """The DN in CertGate's canonical form, for comparing and storing.

    RFC 4514 order (last RDN first) and escaping; attribute types as RFC 4514's lower-case keywords
    (cn, l, st, o, ou, c, street, dc, uid) or dotted OIDs; string values NFKC-normalised,
    case-folded and with whitespace collapsed (RFC 5280 §7.1 matching); the values of a
    multi-valued RDN sorted. Two DNs that RFC 5280 would match have the same canonical form.
    """
    rdns = []
    for rdn in reversed(list(name.rdns)):
        attributes = [_canonical_attribute(a) for a in rdn]
        if len(attributes) > 1:
            attributes.sort()
        rdns.append("+".join(attributes))
    return ",".join(rdns)


def display_dn(name: x509.Name) -> str:
    """The DN as the certificate spells it (RFC 4514 string), for people."""
    return name.rfc4514_string(_DISPLAY_TYPE_NAMES)


# Attribute type keywords accepted in typed DNs, in the cases operators write them.
_TYPED_DN_KEYWORDS: dict[str, x509.ObjectIdentifier] = {
    spelling: oid
    for oid, name in {
        **{oid: name.upper() for oid, name in _CANONICAL_TYPE_NAMES.items()},
        **_DISPLAY_TYPE_NAMES,
        NameOID.TITLE: "title",
        NameOID.SURNAME: "SN",
        NameOID.GIVEN_NAME: "GN",
    }.items()
    for spelling in (name, name.lower(), name.upper())
}


def canonical_dn_text(text: str) -> str:
    """A DN typed as RFC 4514 text (``CN=Zhang San,O=Example,C=CN``, or CertGate's canonical
    form) in canonical form; ``ValueError`` when it is not a DN."""
    try:
        # Operators copy DNs with a space after each separator ("CN=a, O=b"); RFC 4514 has none.
        compact = re.sub(r"(?<!\\)([,+])\s+", r"\1", text.strip())
        name = x509.Name.from_rfc4514_string(compact, _TYPED_DN_KEYWORDS)
    except ValueError:
        raise ValueError("not an RFC 4514 distinguished name") from None
    if not list(name):
        raise ValueError("an empty distinguished name")
    return canonical_dn(name)


def serial_hex(serial_number: int) -> str:
    """Lower-case hex without leading zeros: CertGate's form of a certificate serial."""
    return format(serial_number, "x")


def normalize_serial(text: str) -> str:
    """A serial as an operator types it (``0x01:AB``, ``01 ab``, ``1AB``) in CertGate's form."""
    compact = re.sub(r"[\s:]", "", text.strip().lower()).removeprefix("0x")
    if not compact or not re.fullmatch(r"[0-9a-f]+", compact):
        raise ValueError("a certificate serial is hexadecimal")
    return serial_hex(int(compact, 16))


def issuer_serial_key(issuer_dn: str, serial: str) -> str:
    """``<serial hex>@<canonical issuer DN>``: the serial has no ``@``, so the split is unique."""
    return f"{serial}@{issuer_dn}"


def normalize_issuer_serial(text: str) -> str:
    """``<serial>@<issuer DN>`` as an operator types it, in the form ``issuer_serial`` takes."""
    serial, separator, issuer = text.partition("@")
    if not separator or not issuer.strip():
        raise ValueError("issuer+serial is '<serial hex>@<issuer DN>'")
    return issuer_serial_key(canonical_dn_text(issuer), normalize_serial(serial))


# --- the identity -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvalidIdentifier:
    """An identifier the certificate carries that is not used: bad checksum, malformed, conflict."""

    field: str
    # Kept for the operator's own inspection; never in repr, logs or to_json.
    value: str = dataclasses.field(repr=False)
    reason: str
    source: str

    @property
    def value_masked(self) -> str:
        return mask_identifier(self.value)

    def to_json(self) -> dict[str, str]:
        return {
            "field": self.field,
            "value_masked": self.value_masked,
            "reason": self.reason,
            "source": self.source,
        }


@dataclass(frozen=True)
class CertificateIdentity:
    subject_dn: str  # canonical_dn(subject)
    common_name: str | None
    emails: tuple[str, ...]  # lower-cased; subject emailAddress first, then SAN rfc822Name
    upns: tuple[str, ...]  # SAN otherName UPN, lower-cased
    serial: str  # serial_hex
    issuer_dn: str  # canonical_dn(issuer)
    issuer_serial: str  # issuer_serial_key(issuer_dn, serial)
    sha256: str  # thumbprint of the DER certificate, lower-case hex
    subject_serial_number: str | None  # 2.5.4.5 as written
    unified_social_credit_code: str | None = None  # valid ones only
    id_card_number: str | None = None  # valid ones only
    organization_code: str | None = None  # valid 9-character code (when .4.1.4 is not a USCC)
    ca_entity_id: str | None = None  # NETCA entity identifier
    holder_name: str | None = None  # from a CN pattern's ``name`` group
    invalid: tuple[InvalidIdentifier, ...] = ()
    subject: x509.Name | None = dataclasses.field(default=None, repr=False, compare=False)

    @functools.cached_property
    def subject_dn_display(self) -> str:
        """The subject as RFC 4514 text (``display_dn``), for people. Made when first read: a
        login never reads it, and it cost a quarter of ``extract_identity``
        (bench/bench_login.py)."""
        return display_dn(self.subject) if self.subject is not None else self.subject_dn

    def _personal_values(self) -> list[str]:
        values = [self.id_card_number, self.subject_serial_number]
        values += [i.value for i in self.invalid if i.field == ID_CARD_NUMBER]
        return [v for v in values if v]

    def to_json(self, *, mask_personal_data: bool = False) -> dict[str, Any]:
        """Every field by name. ``mask_personal_data`` for anything log-bound: ID numbers (also
        where they appear inside the CN or DN), e-mail addresses and UPNs are masked."""
        mask: Callable[[str | None], str | None]
        if mask_personal_data:
            secrets = self._personal_values()

            def mask(text: str | None) -> str | None:
                if text is None:
                    return None
                for secret in secrets:
                    text = text.replace(secret, mask_identifier(secret))
                    text = text.replace(secret.lower(), mask_identifier(secret))
                return text

            def mask_all(values: tuple[str, ...]) -> list[str]:
                return [mask_identifier(v) for v in values]
        else:

            def mask(text: str | None) -> str | None:
                return text

            def mask_all(values: tuple[str, ...]) -> list[str]:
                return list(values)

        return {
            "subject_dn": mask(self.subject_dn),
            "subject_dn_display": mask(self.subject_dn_display),
            "common_name": mask(self.common_name),
            "emails": mask_all(self.emails),
            "upns": mask_all(self.upns),
            "serial": self.serial,
            "issuer_dn": self.issuer_dn,
            "issuer_serial": self.issuer_serial,
            "sha256": self.sha256,
            "subject_serial_number": (
                mask_identifier(self.subject_serial_number)
                if mask_personal_data and self.subject_serial_number
                else self.subject_serial_number
            ),
            "unified_social_credit_code": self.unified_social_credit_code,
            "id_card_number": (
                mask_identifier(self.id_card_number)
                if mask_personal_data and self.id_card_number
                else self.id_card_number
            ),
            "organization_code": self.organization_code,
            "ca_entity_id": self.ca_entity_id,
            "holder_name": self.holder_name,
            "invalid": [i.to_json() for i in self.invalid],
        }

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks: the masked form only.
        return f"CertificateIdentity({self.to_json(mask_personal_data=True)!r})"


# --- reading the certificate --------------------------------------------------------------------

_DER_STRING_TYPES = (asn1.PrintableString, asn1.UTF8String, asn1.IA5String)


# Universal tags of the string types above (primitive form).
_DER_STRING_TAGS: Mapping[type[asn1.Asn1Value], int] = {
    asn1.PrintableString: 0x13,
    asn1.UTF8String: 0x0C,
    asn1.IA5String: 0x16,
}


def _short_ascii_der_string(der: bytes, allowed: tuple[type[asn1.Asn1Value], ...]) -> str | None:
    """The common case without a general parser: one allowed string tag, a short-form length
    covering exactly the rest, ASCII content (which all three types decode alike). None for
    anything else, which the general parser then reads or refuses."""
    if len(der) < 2 or der[1] != len(der) - 2 or der[1] >= 0x80:
        return None
    if not any(der[0] == _DER_STRING_TAGS.get(kind) for kind in allowed):
        return None
    content = der[2:]
    return content.decode("ascii") if content.isascii() else None


def read_der_string(
    der: bytes, allowed: tuple[type[asn1.Asn1Value], ...] = _DER_STRING_TYPES
) -> str:
    """The text of a DER PrintableString, UTF8String or IA5String; ValueError for anything else."""
    text = _short_ascii_der_string(der, allowed)
    if text is not None:
        return text
    try:
        parsed = asn1.Asn1Value.load(der, strict=True)
        if not isinstance(parsed, allowed):
            raise ValueError(f"a DER {type(parsed).__name__}, not a string")
        text = parsed.native
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a DER string: {exc}") from None
    if not isinstance(text, str):
        raise ValueError("not a DER string")
    return text


def _extensions(certificate: x509.Certificate) -> x509.Extensions:
    # Through certs.extensions: an explicitly encoded DEFAULT (basicConstraints cA FALSE, common
    # in Chinese CAs' certificates) is read, not refused with the whole certificate.
    try:
        return extensions(certificate)
    except (ValueError, x509.DuplicateExtension) as exc:  # malformed or duplicated
        raise CertificateUntrusted(f"malformed certificate extensions: {exc}") from None


def _found_in_extensions(extensions: x509.Extensions, interpret: _Interpret) -> list[_Found]:
    found = []
    for extension in extensions:
        kind = IDENTIFIER_OIDS.get(extension.oid)
        if kind is None:
            continue
        source = f"extension {extension.oid.dotted_string}"
        raw = extension.value
        if not isinstance(raw, x509.UnrecognizedExtension):
            continue
        try:
            text = read_der_string(raw.value)
        except ValueError as exc:
            found.append(_Found(FIELD_OF_INTERPRETER[kind], raw.value.hex(), source, str(exc)))
            continue
        found.append(interpret(kind, text, source))
    return found


@dataclass
class _SubjectReading:
    """What one pass over the subject's attributes finds (in the subject's order)."""

    common_names: list[str] = dataclasses.field(default_factory=list)
    serial_numbers: list[str] = dataclasses.field(default_factory=list)
    emails: list[str] = dataclasses.field(default_factory=list)
    found: list[_Found] = dataclasses.field(default_factory=list)


def _recognised_serial_number(value: str, issued: date) -> str | None:
    """What an undeclared subject serialNumber evidently is, or None.

    OV/EV certificates of Chinese CAs write the enterprise's unified social credit code there,
    personal certificates the ID-card number. Without an issuer's declaration a value counts only
    when it is unmistakable: exactly one of the two checksums holds, and an ID-card number's
    holder was born before the certificate was issued. Anything else — a CA's own reference
    number, a value both checksums accept — is only reported as written, never as an error.
    """
    cleaned = _clean(value)
    is_uscc = is_valid_uscc(cleaned)
    is_id_card = is_valid_id_card_number(cleaned) and (
        date(int(cleaned[6:10]), int(cleaned[10:12]), int(cleaned[12:14])) <= issued
    )
    if is_uscc == is_id_card:
        return None
    return UNIFIED_SOCIAL_CREDIT_CODE if is_uscc else ID_CARD_NUMBER


def _read_subject(
    subject: x509.Name, profile: IdentityProfile, interpret: _Interpret, issued: date
) -> _SubjectReading:
    reading = _SubjectReading()
    for attribute in subject:
        value = attribute.value
        if not isinstance(value, str):
            continue
        oid = attribute.oid
        kind = IDENTIFIER_OIDS.get(oid)
        if oid == NameOID.COMMON_NAME:
            reading.common_names.append(value)
        elif oid == NameOID.SERIAL_NUMBER:
            reading.serial_numbers.append(value)
            if kind is None:
                kind = profile.subject_serial_number_holds or _recognised_serial_number(
                    value, issued
                )
        elif oid == NameOID.EMAIL_ADDRESS:
            reading.emails.append(value)
        if kind is not None:
            reading.found.append(interpret(kind, value, f"subject {oid.dotted_string}"))
    return reading


def _found_in_common_name(
    common_name: str | None, profile: IdentityProfile, interpret: _Interpret
) -> tuple[list[_Found], str | None]:
    if common_name is None:
        return [], None
    for pattern in profile.cn_patterns:
        match = pattern.fullmatch(common_name)
        if match is None:
            continue
        found = [
            interpret(group, value, "subject CN")
            for group, value in match.groupdict().items()
            if group != "name" and value
        ]
        return found, match.groupdict().get("name")
    return [], None


def _settle(found: Iterable[_Found]) -> tuple[dict[str, str], list[InvalidIdentifier]]:
    """One value per field: valid values agreeing; anything else is reported, not used."""
    valid: dict[str, dict[str, str]] = {}  # field -> value -> first source
    invalid: dict[tuple[str, str], InvalidIdentifier] = {}
    for item in found:
        if item.valid:
            valid.setdefault(item.field, {}).setdefault(item.value, item.source)
        else:
            key = (item.field, item.value)
            invalid.setdefault(
                key, InvalidIdentifier(item.field, item.value, item.reason, item.source)
            )
    settled = {}
    for field_name, values in valid.items():
        if len(values) == 1:
            settled[field_name] = next(iter(values))
            continue
        for value, source in values.items():
            invalid.setdefault(
                (field_name, value),
                InvalidIdentifier(
                    field_name, value, "the certificate carries different values", source
                ),
            )
    return settled, list(invalid.values())


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _subject_alternative_names(extensions: x509.Extensions) -> list[x509.GeneralName]:
    for extension in extensions:
        if isinstance(extension.value, x509.SubjectAlternativeName):
            return list(extension.value)
    return []


@functools.lru_cache(maxsize=256)
def _issuer_subject_dn(issuer: x509.Certificate) -> str:
    return canonical_dn(issuer.subject)


def extract_identity(
    certificate: x509.Certificate,
    profile: IdentityProfile | None = None,
    *,
    issuer: x509.Certificate | None = None,
    sha256: str | None = None,
) -> CertificateIdentity:
    """Everything CertGate reads about the holder from ``certificate``.

    ``issuer`` is the certificate that issued it, from a validated path, and ``sha256`` its
    thumbprint when the caller already has it: a login passes both, so that the issuer's
    canonical DN comes from a cache of one entry per CA (path validation matched the leaf's
    issuer name to that certificate's subject, and names that match have one canonical form)
    and the thumbprint is not hashed twice. Without them, both are read from ``certificate``.

    Raises ``CertificateUntrusted`` only for a certificate whose extensions cannot be parsed.
    """
    profile = profile or IdentityProfile()
    extensions = _extensions(certificate)
    subject = certificate.subject
    names = _subject_alternative_names(extensions)
    interpret = _Interpretations()
    reading = _read_subject(subject, profile, interpret, certificate.not_valid_before_utc.date())
    common_name = reading.common_names[0] if reading.common_names else None
    serial_numbers = reading.serial_numbers

    upns: list[str] = []
    found: list[_Found] = []
    for name in names:
        if isinstance(name, x509.OtherName) and name.type_id == OID_UPN:
            try:
                upns.append(read_der_string(name.value, (asn1.UTF8String,)).strip().lower())
            except ValueError as exc:
                found.append(_Found("upn", name.value.hex(), "SAN otherName UPN", str(exc)))
    emails = [e.strip().lower() for e in reading.emails]
    emails += [n.value.strip().lower() for n in names if isinstance(n, x509.RFC822Name)]

    found += _found_in_extensions(extensions, interpret)
    found += reading.found
    from_cn, holder_name = _found_in_common_name(common_name, profile, interpret)
    found += from_cn
    settled, invalid = _settle(found)

    subject_dn = canonical_dn(subject)
    issuer_dn = (
        _issuer_subject_dn(issuer) if issuer is not None else canonical_dn(certificate.issuer)
    )
    serial = serial_hex(certificate.serial_number)
    return CertificateIdentity(
        subject_dn=subject_dn,
        common_name=common_name,
        emails=_unique(emails),
        upns=_unique(upns),
        serial=serial,
        issuer_dn=issuer_dn,
        issuer_serial=issuer_serial_key(issuer_dn, serial),
        sha256=sha256 or certificate.fingerprint(hashes.SHA256()).hex(),
        subject_serial_number=serial_numbers[0] if serial_numbers else None,
        unified_social_credit_code=settled.get(UNIFIED_SOCIAL_CREDIT_CODE),
        id_card_number=settled.get(ID_CARD_NUMBER),
        organization_code=settled.get(ORGANIZATION_CODE),
        ca_entity_id=settled.get(CA_ENTITY_ID),
        holder_name=holder_name.strip() if holder_name else None,
        invalid=tuple(invalid),
        subject=subject,
    )
