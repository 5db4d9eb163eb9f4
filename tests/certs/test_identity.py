"""Identity extraction from certificates built here with cryptography's builders.

The certificates are made in test code (not by the test PKI) so every placement Chinese CAs use can
be produced directly: identity OIDs as extensions and as subject attributes, each DER string type,
CFCA-style CNs, bad checksums, SAN e-mail and UPN. ``issue_certificate`` is shared with the
mapping tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from certs.errors import CertificateUntrusted
from certs.identity import (
    OID_BJCA_PERSON_IDENTIFIER,
    OID_ID_CARD_NUMBER,
    OID_NETCA_ENTITY_IDENTIFIER,
    OID_ORGANIZATION_CODE,
    OID_UPN,
    IdentityProfile,
    canonical_dn,
    canonical_dn_text,
    compile_cn_pattern,
    display_dn,
    extract_identity,
    is_valid_organization_code,
    normalize_issuer_serial,
    normalize_serial,
    read_der_string,
)

AT = datetime(2026, 3, 1, tzinfo=UTC)
ID_NUMBER = "11010519491231002X"
OTHER_ID_NUMBER = "360426199101010071"
USCC = "91110000600037341L"
OTHER_USCC = "9144030071526726XG"
ORGANIZATION_CODE = "600037341"  # positions 9-17 of USCC

CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CertGate Identity Test CA"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Identity Test CA"),
    ]
)


def _ca_certificate() -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(CA_NAME)
        .issuer_name(CA_NAME)
        .public_key(CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(AT - timedelta(days=365))
        .not_valid_after(AT + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(CA_KEY, hashes.SHA256())
    )


CA_CERTIFICATE = _ca_certificate()

DER_STRING = {
    "PrintableString": lambda v: asn1.PrintableString(v).dump(),
    "UTF8String": lambda v: asn1.UTF8String(v).dump(),
    "IA5String": lambda v: asn1.IA5String(v).dump(),
}
NAME_STRING = {
    "PrintableString": _ASN1Type.PrintableString,
    "UTF8String": _ASN1Type.UTF8String,
    "IA5String": _ASN1Type.IA5String,
}

Attribute = tuple[x509.ObjectIdentifier, str] | tuple[x509.ObjectIdentifier, str, _ASN1Type]


def subject(*attributes: Attribute) -> x509.Name:
    built = []
    for attribute in attributes:
        if len(attribute) == 3:
            built.append(x509.NameAttribute(attribute[0], attribute[1], _type=attribute[2]))
        else:
            built.append(x509.NameAttribute(attribute[0], attribute[1]))
    return x509.Name(built)


def issue_certificate(
    name: x509.Name | None = None,
    *,
    extensions: Sequence[tuple[x509.ObjectIdentifier, bytes]] = (),
    alternative_names: Sequence[x509.GeneralName] = (),
    serial: int = 0x1001,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    """A leaf signed by the test CA with the given subject, raw extensions and SAN."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name or subject((NameOID.COMMON_NAME, "Test Holder")))
        .issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(AT - timedelta(days=1))
        .not_valid_after(AT + timedelta(days=365))
    )
    for oid, value in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    if alternative_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(alternative_names)), critical=False
        )
    return builder.sign(CA_KEY, hashes.SHA256())


# --- Chinese identity OIDs ------------------------------------------------------------------


@pytest.mark.parametrize("string_type", sorted(DER_STRING))
def test_id_card_number_in_an_extension_of_each_string_type(string_type):
    der = DER_STRING[string_type](ID_NUMBER)
    identity = extract_identity(issue_certificate(extensions=[(OID_ID_CARD_NUMBER, der)]))
    assert identity.id_card_number == ID_NUMBER
    assert identity.invalid == ()


@pytest.mark.parametrize("string_type", sorted(NAME_STRING))
def test_id_card_number_as_a_subject_attribute_of_each_string_type(string_type):
    name = subject(
        (NameOID.COMMON_NAME, "张三"),
        (OID_ID_CARD_NUMBER, ID_NUMBER, NAME_STRING[string_type]),
    )
    assert extract_identity(issue_certificate(name)).id_card_number == ID_NUMBER


@pytest.mark.parametrize("string_type", sorted(DER_STRING))
def test_social_credit_code_in_an_extension_of_each_string_type(string_type):
    der = DER_STRING[string_type](USCC)
    identity = extract_identity(issue_certificate(extensions=[(OID_ORGANIZATION_CODE, der)]))
    assert identity.unified_social_credit_code == USCC
    assert identity.organization_code is None


@pytest.mark.parametrize("string_type", sorted(NAME_STRING))
def test_social_credit_code_as_a_subject_attribute_of_each_string_type(string_type):
    name = subject(
        (NameOID.ORGANIZATION_NAME, "某某建设有限公司"),
        (OID_ORGANIZATION_CODE, USCC, NAME_STRING[string_type]),
    )
    assert extract_identity(issue_certificate(name)).unified_social_credit_code == USCC


def test_the_same_identifier_in_both_places_is_one_value():
    name = subject((NameOID.COMMON_NAME, "张三"), (OID_ID_CARD_NUMBER, ID_NUMBER))
    certificate = issue_certificate(
        name, extensions=[(OID_ID_CARD_NUMBER, DER_STRING["UTF8String"](ID_NUMBER))]
    )
    identity = extract_identity(certificate)
    assert identity.id_card_number == ID_NUMBER
    assert identity.invalid == ()


@pytest.mark.parametrize("written", [ORGANIZATION_CODE, "60003734-1"])
def test_a_nine_character_organization_code_is_not_a_social_credit_code(written):
    der = DER_STRING["PrintableString"](written)
    identity = extract_identity(issue_certificate(extensions=[(OID_ORGANIZATION_CODE, der)]))
    assert identity.organization_code == ORGANIZATION_CODE
    assert identity.unified_social_credit_code is None


@pytest.mark.parametrize("code", [USCC, OTHER_USCC, "91440300MA5H8REU3K"])
def test_organization_code_inside_a_social_credit_code_checks(code):
    # GB 32100: characters 9-17 of a USCC are the GB 11714 organization code.
    assert is_valid_organization_code(code[8:17])


def test_bjca_identifier_is_sf_and_the_id_card_number():
    der = DER_STRING["UTF8String"]("SF" + ID_NUMBER)
    identity = extract_identity(issue_certificate(extensions=[(OID_BJCA_PERSON_IDENTIFIER, der)]))
    assert identity.id_card_number == ID_NUMBER


def test_netca_entity_identifier_is_kept_as_written():
    der = DER_STRING["UTF8String"]("SF0123456789ABCDEF")
    identity = extract_identity(issue_certificate(extensions=[(OID_NETCA_ENTITY_IDENTIFIER, der)]))
    assert identity.ca_entity_id == "SF0123456789ABCDEF"


def test_full_width_and_lower_case_identifiers_are_normalised():
    full_width = "１１０１０５１９４９１２３１００２ｘ"
    der = DER_STRING["UTF8String"](full_width)
    identity = extract_identity(issue_certificate(extensions=[(OID_ID_CARD_NUMBER, der)]))
    assert identity.id_card_number == ID_NUMBER


INVALID_IDENTIFIERS = [
    # (scenario, placement, oid, value, field, reason fragment)
    ("ID check digit wrong", "extension", OID_ID_CARD_NUMBER, "110105194912310021",
     "id_card_number", "GB 11643"),
    ("ID birth date impossible", "subject", OID_ID_CARD_NUMBER, "110105194902300023",
     "id_card_number", "GB 11643"),
    ("first-generation 15-digit ID", "extension", OID_ID_CARD_NUMBER, "110105491231002",
     "id_card_number", "15-digit"),
    ("USCC check character wrong", "extension", OID_ORGANIZATION_CODE, "91110000600037341M",
     "unified_social_credit_code", "GB 32100"),
    ("USCC check character wrong", "subject", OID_ORGANIZATION_CODE, "91110000600037341M",
     "unified_social_credit_code", "GB 32100"),
    ("organization code check wrong", "extension", OID_ORGANIZATION_CODE, "600037342",
     "organization_code", "GB 11714"),
    ("neither USCC nor organization code", "subject", OID_ORGANIZATION_CODE, "12345",
     "unified_social_credit_code", "neither"),
    ("BJCA passport prefix", "extension", OID_BJCA_PERSON_IDENTIFIER, "HZE12345678",
     "id_card_number", "document type"),
    ("BJCA ID check digit wrong", "extension", OID_BJCA_PERSON_IDENTIFIER,
     "SF110105194912310021", "id_card_number", "GB 11643"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "placement", "oid", "value", "field", "reason"),
    INVALID_IDENTIFIERS,
    ids=[f"{row[0]} ({row[1]})" for row in INVALID_IDENTIFIERS],
)
def test_invalid_identifiers_are_flagged_and_not_used(
    scenario, placement, oid, value, field, reason
):
    if placement == "extension":
        certificate = issue_certificate(extensions=[(oid, DER_STRING["UTF8String"](value))])
    else:
        certificate = issue_certificate(subject((NameOID.COMMON_NAME, "x"), (oid, value)))
    identity = extract_identity(certificate)
    assert getattr(identity, field) is None, scenario
    (flagged,) = identity.invalid
    assert flagged.field == field
    assert reason in flagged.reason
    assert flagged.to_json()["value_masked"] != value
    # The raw value stays out of the JSON (except where the DN itself carries it).
    document = identity.to_json()
    assert value not in json.dumps(document["invalid"])
    assert document[field] is None


@pytest.mark.parametrize(
    ("scenario", "value"),
    [
        ("OCTET STRING", b"\x04\x12" + ID_NUMBER.encode()),
        ("raw text, no DER", ID_NUMBER.encode()),
        ("BMPString", asn1.BMPString(ID_NUMBER).dump()),
        ("truncated DER", b"\x13\x12" + ID_NUMBER.encode()[:5]),
    ],
)
def test_an_extension_that_is_not_a_der_string_is_flagged(scenario, value):
    identity = extract_identity(issue_certificate(extensions=[(OID_ID_CARD_NUMBER, value)]))
    assert identity.id_card_number is None, scenario
    assert [i.field for i in identity.invalid] == ["id_card_number"]


def test_two_different_valid_numbers_are_a_conflict_not_a_choice():
    name = subject((NameOID.COMMON_NAME, "张三"), (OID_ID_CARD_NUMBER, OTHER_ID_NUMBER))
    certificate = issue_certificate(
        name, extensions=[(OID_ID_CARD_NUMBER, DER_STRING["UTF8String"](ID_NUMBER))]
    )
    identity = extract_identity(certificate)
    assert identity.id_card_number is None
    assert {i.reason for i in identity.invalid} == {"the certificate carries different values"}
    assert len(identity.invalid) == 2


def test_a_valid_value_is_used_beside_an_invalid_one_elsewhere():
    name = subject((NameOID.COMMON_NAME, "x"), (OID_ORGANIZATION_CODE, "91110000600037341M"))
    certificate = issue_certificate(
        name, extensions=[(OID_ORGANIZATION_CODE, DER_STRING["PrintableString"](USCC))]
    )
    identity = extract_identity(certificate)
    assert identity.unified_social_credit_code == USCC
    assert [i.field for i in identity.invalid] == ["unified_social_credit_code"]


# --- issuer-specific places: CN patterns and subject serialNumber ---------------------------

CFCA = IdentityProfile.build(cn_patterns=["cfca-person"])
ENTERPRISE_CN = IdentityProfile.build(
    cn_patterns=[r"051@(?P<unified_social_credit_code>[0-9A-Z]{18})@(?P<name>[^@]+)@[0-9]+"]
)


@pytest.mark.parametrize("check", ["X", "x"])
def test_cfca_cn_carries_the_id_card_number_and_name(check):
    cn = f"041@0{ID_NUMBER[:-1]}{check}@张三@00000001"
    identity = extract_identity(issue_certificate(subject((NameOID.COMMON_NAME, cn))), CFCA)
    assert identity.id_card_number == ID_NUMBER
    assert identity.holder_name == "张三"
    assert identity.common_name == cn


def test_cn_patterns_apply_only_when_the_issuer_profile_names_them():
    cn = f"041@0{ID_NUMBER}@张三@00000001"
    identity = extract_identity(issue_certificate(subject((NameOID.COMMON_NAME, cn))))
    assert identity.id_card_number is None
    assert identity.holder_name is None


def test_enterprise_cn_pattern_carries_the_social_credit_code():
    cn = f"051@{USCC}@某某建设有限公司@00000002"
    certificate = issue_certificate(subject((NameOID.COMMON_NAME, cn)))
    identity = extract_identity(certificate, ENTERPRISE_CN)
    assert identity.unified_social_credit_code == USCC
    assert identity.holder_name == "某某建设有限公司"


def test_cfca_cn_with_a_bad_check_digit_is_flagged():
    cn = "041@0110105194912310021@张三@00000001"
    identity = extract_identity(issue_certificate(subject((NameOID.COMMON_NAME, cn))), CFCA)
    assert identity.id_card_number is None
    assert identity.invalid[0].source == "subject CN"


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"041@(?P<id>[0-9]+)", "unknown named group"),
        (r"041@(?P<name>.*)", "no identifier group"),
        (r"041@(?P<id_card_number>[0-9", "not a valid regular expression"),
    ],
)
def test_cn_patterns_are_checked_when_compiled(pattern, problem):
    with pytest.raises(ValueError, match=problem):
        compile_cn_pattern(pattern)


def test_subject_serial_number_uscc_is_reported_as_such():
    name = subject((NameOID.COMMON_NAME, "某某公司"), (NameOID.SERIAL_NUMBER, USCC))
    certificate = issue_certificate(name)
    plain = extract_identity(certificate)
    assert plain.subject_serial_number == USCC
    assert plain.unified_social_credit_code == USCC
    declared = IdentityProfile.build(subject_serial_number_holds="unified_social_credit_code")
    assert extract_identity(certificate, declared).unified_social_credit_code == USCC


def test_subject_serial_number_id_card_number_is_reported_as_such():
    name = subject((NameOID.COMMON_NAME, "张三"), (NameOID.SERIAL_NUMBER, ID_NUMBER))
    identity = extract_identity(issue_certificate(name))
    assert identity.id_card_number == ID_NUMBER
    assert identity.unified_social_credit_code is None


@pytest.mark.parametrize(
    "value",
    [
        "91110000600037341M",  # USCC with a wrong check character
        "ABC-2024-000123",  # a CA's own reference number
        "110105204912310026",  # an ID-card number born after the certificate was issued
    ],
)
def test_undeclared_subject_serial_number_that_is_no_identifier_is_only_reported(value):
    name = subject((NameOID.COMMON_NAME, "某某"), (NameOID.SERIAL_NUMBER, value))
    identity = extract_identity(issue_certificate(name))
    assert identity.subject_serial_number == value
    assert identity.unified_social_credit_code is None and identity.id_card_number is None
    assert identity.invalid == ()


def test_subject_serial_number_contradicting_the_extension_is_not_used():
    name = subject((NameOID.COMMON_NAME, "某某公司"), (NameOID.SERIAL_NUMBER, OTHER_USCC))
    certificate = issue_certificate(
        name, extensions=[(OID_ORGANIZATION_CODE, DER_STRING["PrintableString"](USCC))]
    )
    identity = extract_identity(certificate)
    assert identity.unified_social_credit_code is None
    assert {i.field for i in identity.invalid} == {"unified_social_credit_code"}


def test_profile_refuses_an_unknown_serial_number_meaning():
    with pytest.raises(ValueError, match="cannot hold"):
        IdentityProfile(subject_serial_number_holds="phone_number")


# --- e-mail, UPN, serial, thumbprint ---------------------------------------------------------


def test_emails_from_subject_and_san_and_the_upn():
    name = subject((NameOID.COMMON_NAME, "Li Si"), (NameOID.EMAIL_ADDRESS, "Li.Si@Example.CN"))
    certificate = issue_certificate(
        name,
        alternative_names=[
            x509.RFC822Name("li.si@example.cn"),
            x509.RFC822Name("lisi@corp.example"),
            x509.OtherName(OID_UPN, asn1.UTF8String("LiSi@corp.example").dump()),
        ],
    )
    identity = extract_identity(certificate)
    assert identity.emails == ("li.si@example.cn", "lisi@corp.example")
    assert identity.upns == ("lisi@corp.example",)


def test_a_upn_that_is_not_a_utf8_string_is_flagged():
    certificate = issue_certificate(
        alternative_names=[x509.OtherName(OID_UPN, asn1.IA5String("a@b").dump())]
    )
    identity = extract_identity(certificate)
    assert identity.upns == ()
    assert [i.field for i in identity.invalid] == ["upn"]


def test_serial_issuer_serial_and_thumbprint():
    certificate = issue_certificate(serial=0x00AB12)
    identity = extract_identity(certificate)
    assert identity.serial == "ab12"
    assert identity.issuer_dn == "cn=identity test ca,o=certgate identity test ca,c=cn"
    assert identity.issuer_serial == "ab12@" + identity.issuer_dn
    assert identity.sha256 == certificate.fingerprint(hashes.SHA256()).hex()
    assert identity.sha256 == identity.sha256.lower() and len(identity.sha256) == 64


@pytest.mark.parametrize("typed", ["AB12", "0xab12", "00:AB:12", " 00 ab 12 "])
def test_serials_as_operators_type_them(typed):
    assert normalize_serial(typed) == "ab12"


@pytest.mark.parametrize("typed", ["", "0x", "xyz", "12-34"])
def test_serials_that_are_not_hex_are_refused(typed):
    with pytest.raises(ValueError):
        normalize_serial(typed)


def test_read_der_string_refuses_other_types():
    with pytest.raises(ValueError):
        read_der_string(asn1.Integer(5).dump())


def test_a_certificate_with_duplicate_extensions_is_refused():
    # cryptography's builder refuses duplicates: add the second copy under another OID of the
    # same length and patch the DER (the signature no longer matters for parsing).
    der = DER_STRING["UTF8String"](ID_NUMBER)
    sibling = x509.ObjectIdentifier("1.2.156.10260.4.1.2")
    certificate = issue_certificate(extensions=[(OID_ID_CARD_NUMBER, der), (sibling, der)])
    original = certificate.public_bytes(Encoding.DER)
    sibling_der = asn1.ObjectIdentifier(sibling.dotted_string).dump()
    wanted_der = asn1.ObjectIdentifier(OID_ID_CARD_NUMBER.dotted_string).dump()
    assert original.count(sibling_der) == 1
    patched = x509.load_der_x509_certificate(original.replace(sibling_der, wanted_der))
    with pytest.raises(CertificateUntrusted):
        extract_identity(patched)


# --- distinguished names --------------------------------------------------------------------


def test_canonical_dn_ignores_case_spacing_width_and_string_type():
    a = subject(
        (NameOID.COUNTRY_NAME, "CN", _ASN1Type.PrintableString),
        (NameOID.ORGANIZATION_NAME, "Example  Corp ", _ASN1Type.PrintableString),
        (NameOID.COMMON_NAME, "Zhang San", _ASN1Type.PrintableString),
    )
    b = subject(
        (NameOID.COUNTRY_NAME, "cn", _ASN1Type.PrintableString),
        (NameOID.ORGANIZATION_NAME, "ＥＸＡＭＰＬＥ corp", _ASN1Type.UTF8String),
        (NameOID.COMMON_NAME, " zhang   san", _ASN1Type.UTF8String),
    )
    assert canonical_dn(a) == canonical_dn(b) == "cn=zhang san,o=example corp,c=cn"


def test_canonical_dn_sorts_multi_valued_rdns_and_escapes():
    name = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Sales, North"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "#1 Clerk"),
                ]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SERIAL_NUMBER, USCC)]),
        ]
    )
    assert canonical_dn(name) == ("2.5.4.5=91110000600037341l,cn=\\#1 clerk+ou=sales\\, north")


def test_display_dn_keeps_the_certificate_spelling():
    name = subject((NameOID.COMMON_NAME, "Zhang San"), (NameOID.SERIAL_NUMBER, USCC))
    assert display_dn(name) == f"serialNumber={USCC},CN=Zhang San"


# --- JSON and logs --------------------------------------------------------------------------

JSON_FIELDS = {
    "subject_dn", "subject_dn_display", "common_name", "emails", "upns", "serial", "issuer_dn",
    "issuer_serial", "sha256", "subject_serial_number", "unified_social_credit_code",
    "id_card_number", "organization_code", "ca_entity_id", "holder_name", "invalid",
}  # fmt: skip


def test_to_json_names_every_field_and_is_serialisable():
    identity = extract_identity(issue_certificate())
    document = identity.to_json()
    assert set(document) == JSON_FIELDS
    json.dumps(document)


def test_masked_json_and_repr_keep_id_numbers_out_of_logs():
    cn = f"041@0{ID_NUMBER}@张三@00000001"
    name = subject((NameOID.COMMON_NAME, cn), (NameOID.SERIAL_NUMBER, OTHER_ID_NUMBER))
    identity = extract_identity(issue_certificate(name), CFCA)
    # The serialNumber's ID-card number contradicts the CN's: neither is used, both are masked.
    assert identity.id_card_number is None
    for text in (json.dumps(identity.to_json(mask_personal_data=True)), repr(identity)):
        assert ID_NUMBER not in text
        assert ID_NUMBER.lower() not in text
        assert OTHER_ID_NUMBER not in text
    assert ID_NUMBER in json.dumps(identity.to_json())


@pytest.mark.parametrize(
    "typed",
    [
        "CN=Identity Test CA,O=CertGate Identity Test CA,C=CN",
        "cn=identity test ca, o=CertGate  Identity Test CA, c=cn",
        "CN=IDENTITY TEST CA,O=CERTGATE IDENTITY TEST CA,C=CN",
    ],
)
def test_typed_dns_reach_the_canonical_form(typed):
    assert canonical_dn_text(typed) == canonical_dn(CA_NAME)


def test_canonical_dn_text_is_idempotent():
    name = subject((NameOID.COMMON_NAME, "#1, Clerk"), (NameOID.SERIAL_NUMBER, USCC))
    canonical = canonical_dn(name)
    assert canonical_dn_text(canonical) == canonical


def test_an_operator_typed_issuer_serial_matches_the_certificate():
    identity = extract_identity(issue_certificate(serial=0x00AB12))
    typed = "00:AB:12@CN=Identity Test CA, O=CertGate Identity Test CA, C=CN"
    assert normalize_issuer_serial(typed) == identity.issuer_serial


@pytest.mark.parametrize("typed", ["ab12", "ab12@", "zz@CN=x", "ab12@not a dn"])
def test_bad_issuer_serials_are_refused(typed):
    with pytest.raises(ValueError):
        normalize_issuer_serial(typed)
