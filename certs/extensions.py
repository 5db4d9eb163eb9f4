"""One way to read a certificate's extensions, also when pyca/cryptography refuses them.

Why hand-written glue: pyca/cryptography parses extension values as strict DER, by design, and
refuses the whole extension list when one value breaks a DER rule (``certificate.extensions``
raises ``ValueError``). Certificates of Chinese CAs commonly write out a DEFAULT value, which DER
forbids — ``basicConstraints`` with an explicit ``cA FALSE`` (``30 03 01 01 00`` instead of
``30 00``). Such a certificate means exactly what its DER form means, and OpenSSL and Windows read
it; refusing it would refuse a real CA's holders (identity extraction found nothing, validation
answered "malformed certificate").

So, only when pyca/cryptography refuses: every extension listed in ``LENIENT_EXTENSIONS`` is read
with asn1crypto (which accepts BER, explicit defaults included, and must consume the whole value)
and written back as DER; the others are left byte for byte. The certificate is then re-assembled
with these values and pyca/cryptography parses the extensions of that copy — so every reader in the
engine gets the same ``x509.Extensions`` types either way. The copy serves only to read extensions:
its signature no longer matches, and signatures, thumbprints and the DER handed on are always the
original certificate's. A value asn1crypto cannot read either, or an extension outside the table
that pyca/cryptography refuses, still raises ``ValueError`` (a malformed certificate).

Every reader of certificate extensions in ``certs`` goes through ``extensions``;
``basic_constraints`` and ``key_usage`` are the two the path checks use most.
"""

from __future__ import annotations

from functools import lru_cache

from asn1crypto import core as asn1
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from certs.der import encode_tlv

# The extensions the engine needs, read leniently when pyca/cryptography refuses them:
# OID -> the asn1crypto type of the value.
LENIENT_EXTENSIONS: dict[x509.ObjectIdentifier, type[asn1.Asn1Value]] = {
    ExtensionOID.BASIC_CONSTRAINTS: asn1_x509.BasicConstraints,
    ExtensionOID.KEY_USAGE: asn1_x509.KeyUsage,
    ExtensionOID.EXTENDED_KEY_USAGE: asn1_x509.ExtKeyUsageSyntax,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: asn1_x509.GeneralNames,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: asn1.OctetString,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: asn1_x509.AuthorityKeyIdentifier,
    ExtensionOID.CRL_DISTRIBUTION_POINTS: asn1_x509.CRLDistributionPoints,
    ExtensionOID.CERTIFICATE_POLICIES: asn1_x509.CertificatePolicies,
}
_LENIENT_BY_DOTTED = {oid.dotted_string: spec for oid, spec in LENIENT_EXTENSIONS.items()}

# How many leniently read certificates are remembered (CA certificates recur in every path).
MEMO_SIZE = 1024

_DER = Encoding.DER
_TAG_SEQUENCE = 0x30
_TAG_BOOLEAN = 0x01
_TAG_OCTET_STRING = 0x04
_TAG_EXTENSIONS = 0xA3  # [3] EXPLICIT in TBSCertificate
_TAG_BIT_STRING = 0x03


def _as_der(spec: type[asn1.Asn1Value], value: bytes) -> bytes:
    """``value`` (BER) re-encoded as DER; ValueError when asn1crypto cannot read it all."""
    try:
        parsed = spec.load(value, strict=True)
        parsed.native  # noqa: B018 - parses every nested value now, so errors surface here
        return parsed.dump(force=True)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"unreadable extension value: {exc}") from None


def _extension_der(extension: asn1_x509.Extension) -> bytes:
    oid = extension["extn_id"].dotted
    value = extension["extn_value"].contents
    spec = _LENIENT_BY_DOTTED.get(oid)
    if spec is not None:
        value = _as_der(spec, value)
    # critical BOOLEAN DEFAULT FALSE: written only when true.
    critical = encode_tlv(_TAG_BOOLEAN, b"\xff") if extension["critical"].native else b""
    return encode_tlv(
        _TAG_SEQUENCE,
        extension["extn_id"].dump() + critical + encode_tlv(_TAG_OCTET_STRING, value),
    )


@lru_cache(maxsize=MEMO_SIZE)
def _read_leniently(certificate: x509.Certificate) -> x509.Extensions:
    der = certificate.public_bytes(_DER)
    try:
        parsed = asn1_x509.Certificate.load(der)
        tbs = parsed["tbs_certificate"]
        fields = [
            tbs[name].dump()
            for name, *_ in asn1_x509.TbsCertificate._fields
            if name != "extensions" and tbs[name].contents is not None
        ]
        written = b"".join(_extension_der(e) for e in tbs["extensions"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"malformed certificate extensions: {exc}") from None
    tbs_der = encode_tlv(
        _TAG_SEQUENCE,
        b"".join(fields) + encode_tlv(_TAG_EXTENSIONS, encode_tlv(_TAG_SEQUENCE, written)),
    )
    # The original signature algorithm and signature, which no longer match: the copy is only
    # ever asked for its extensions.
    copy = encode_tlv(
        _TAG_SEQUENCE,
        tbs_der
        + parsed["signature_algorithm"].dump()
        + encode_tlv(_TAG_BIT_STRING, b"\x00" + certificate.signature),
    )
    return x509.load_der_x509_certificate(copy).extensions


def extensions(certificate: x509.Certificate) -> x509.Extensions:
    """The certificate's extensions; read leniently (see the module) when pyca/cryptography
    refuses their encoding. Raises ``ValueError`` (or ``x509.DuplicateExtension``) for
    extensions that cannot be read either way."""
    try:
        return certificate.extensions
    except x509.DuplicateExtension:
        raise
    except ValueError:
        return _read_leniently(certificate)


def read_leniently(certificate: x509.Certificate) -> bool:
    """True when the certificate's extensions are readable only leniently (not strict DER)."""
    try:
        certificate.extensions  # noqa: B018
    except x509.DuplicateExtension:
        return False
    except ValueError:
        return True
    return False


def extension(
    certificate: x509.Certificate, oid: x509.ObjectIdentifier
) -> x509.Extension[x509.ExtensionType] | None:
    # A scan rather than get_extension_for_oid: an absent extension (the common case for SAN,
    # name constraints, ...) would otherwise cost an ExtensionNotFound raised and caught.
    for found in extensions(certificate):
        if found.oid == oid:
            return found
    return None


def basic_constraints(certificate: x509.Certificate) -> tuple[x509.BasicConstraints, bool] | None:
    """(basicConstraints, critical), or None when the extension is absent."""
    found = extension(certificate, ExtensionOID.BASIC_CONSTRAINTS)
    if found is None:
        return None
    assert isinstance(found.value, x509.BasicConstraints)
    return found.value, found.critical


def key_usage(certificate: x509.Certificate) -> x509.KeyUsage | None:
    found = extension(certificate, ExtensionOID.KEY_USAGE)
    if found is None:
        return None
    assert isinstance(found.value, x509.KeyUsage)
    return found.value
