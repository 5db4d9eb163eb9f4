"""Test certificate chains and CRLs, built with pyca/cryptography at test time on a fixed clock.

Reusable by any test (and the benches): ``build_chain()`` gives root -> intermediate -> leaf with
a client-authentication leaf; ``make_crl()`` signs a CRL for any CA. Keys are cached per label,
so building many chains stays fast; pass distinct labels for distinct keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.policy import TrustAnchor, ValidationPolicy

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
AT = EPOCH + timedelta(days=30)  # validate here: everything below is valid and CRLs are fresh

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

KEY_FACTORIES = {
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
}


@cache
def private_key(kind: str = "p256", label: str = "") -> PrivateKey:
    """One key per (kind, label) for the whole test session."""
    return KEY_FACTORIES[kind]()  # type: ignore[no-any-return]


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CertGate Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: PrivateKey


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def key_usage(*bits: str) -> x509.KeyUsage:
    """A keyUsage with exactly ``bits`` set (names as in ``certs.policy.KEY_USAGE_BITS``)."""
    flags = {
        "digital_signature": False,
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "key_cert_sign": False,
        "crl_sign": False,
    }
    for bit in bits:
        flags[bit] = True
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


def _builder(
    subject: x509.Name,
    issuer: Issued | None,
    key: PrivateKey,
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    issuer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
    )


def _crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def make_ca(
    common_name: str,
    *,
    issuer: Issued | None = None,
    kind: str = "p256",
    serial: int = 1,
    not_before: datetime = EPOCH,
    not_after: datetime = EPOCH + timedelta(days=3650),
    path_length: int | None = None,
    crl_url: str | None = None,
    usage: x509.KeyUsage = _CA_USAGE,
) -> Issued:
    key = private_key(kind, common_name)
    builder = (
        _builder(
            name(common_name),
            issuer,
            key,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .add_extension(usage, True)
    )
    if crl_url:
        builder = builder.add_extension(_crl_distribution_points(crl_url), False)
    return Issued(_sign(builder, issuer.key if issuer else key), key)


def make_leaf(
    common_name: str,
    issuer: Issued,
    *,
    kind: str = "p256",
    serial: int = 1000,
    not_before: datetime = EPOCH,
    not_after: datetime = EPOCH + timedelta(days=365),
    usage: x509.KeyUsage | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    crl_url: str | None = None,
    ocsp_url: str | None = None,
) -> Issued:
    key = private_key(kind, "leaf")
    builder = _builder(
        name(common_name),
        issuer,
        key,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
    ).add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(usage or key_usage("digital_signature"), True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), False)
    if crl_url:
        builder = builder.add_extension(_crl_distribution_points(crl_url), False)
    if ocsp_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.oid.AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(ocsp_url),
                    )
                ]
            ),
            False,
        )
    return Issued(_sign(builder, issuer.key), key)


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: datetime = EPOCH + timedelta(days=10)
    reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise


def make_crl(
    issuer: Issued,
    revoked: Iterable[Revocation] = (),
    *,
    this_update: datetime = EPOCH + timedelta(days=20),
    next_update: datetime = EPOCH + timedelta(days=40),
    number: int | None = 1,
    number_critical: bool = False,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    """A DER CRL signed by ``issuer``."""
    from cryptography.hazmat.primitives.serialization import Encoding

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), number_critical)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    for entry in revoked:
        revoked_builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not None:
            revoked_builder = revoked_builder.add_extension(x509.CRLReason(entry.reason), False)
        builder = builder.add_revoked_certificate(revoked_builder.build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(Encoding.DER)


@dataclass(frozen=True)
class Chain:
    root: Issued
    intermediate: Issued
    leaf: Issued
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)

    @property
    def anchor(self) -> TrustAnchor:
        return TrustAnchor(self.root.certificate, self.policy, name="test root")

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return (self.intermediate.certificate,)

    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, root last: the path a validation returns."""
        return (self.leaf.certificate, self.intermediate.certificate, self.root.certificate)


def build_chain(
    kind: str = "p256",
    *,
    policy: ValidationPolicy | None = None,
    intermediate_crl_url: str | None = None,
    leaf_crl_url: str | None = None,
    **leaf_options: object,
) -> Chain:
    """root -> intermediate -> leaf (clientAuth, digitalSignature), all of key type ``kind``."""
    root = make_ca(f"Test Root {kind}", kind=kind)
    intermediate = make_ca(
        f"Test Issuing CA {kind}", issuer=root, kind=kind, serial=2, crl_url=intermediate_crl_url
    )
    leaf = make_leaf(
        "张三 Test Person",
        intermediate,
        kind=kind,
        crl_url=leaf_crl_url,
        **leaf_options,  # type: ignore[arg-type]
    )
    return Chain(root, intermediate, leaf, policy or ValidationPolicy())
