"""A test PKI shaped like the Chinese CAs CertGate meets: root CA, RSA-2048, P-256 and SM2
intermediate CAs (the SM2 one signs SM2-with-SM3, signer ID 1234567812345678), CRLs, delegated
OCSP signers and an OpenSSL index for a real ``openssl ocsp`` responder.

FOR TESTING ONLY: every private key is stored unencrypted in the PKI folder.

Folder layout (all written atomically; keys mode 0600)::

    pki.json                    state: host, ports, CRL numbers, every issued certificate
    <ca>/ca.pem  <ca>/ca.key    the CA ("root", "rsa", "p256", "sm2")
    <ca>/crl.der <ca>/crl.pem   its current CRL
    <ca>/ocsp.pem <ca>/ocsp.key its delegated OCSP signing certificate
    <ca>/index.txt              OpenSSL ``ca`` database read by ``openssl ocsp``
    issued/<SERIAL>.pem .key -chain.pem   leaf certificates

Time is an argument (``at=``); it defaults to now.
"""

from __future__ import annotations

import fcntl
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from certs.errors import REVOCATION_REASON_TEXT
from certs.identifiers import is_valid_id_card_number, is_valid_uscc, normalize_identifier
from certs.sm2 import Sm2PrivateKey
from softhsm.pki_files import (
    PRIVATE_FILE_MODE,
    IndexEntry,
    certificates_pem,
    oneline_subject,
    serial_hex,
    write_atomically,
    write_openssl_index,
)
from softhsm.pki_identifiers import random_id_card_number, random_uscc
from softhsm.pki_sm2 import (
    PrivateKey,
    PublicKey,
    key_identifier,
    load_private_key_pem,
    private_key_pem,
    sign_certificate,
    sign_crl,
)

if TYPE_CHECKING:
    from softhsm.pki_server import RunningPki

__all__ = [
    "CA_NAMES",
    "ID_CARD_NUMBER_OID",
    "USCC_OID",
    "IssuedCertificate",
    "PkiError",
    "PkiInputError",
    "PkiNotFound",
    "TestPki",
    "UnknownSerial",
    "random_id_card_number",
    "random_uscc",
]

STATE_FILE = "pki.json"
STATE_FORMAT = 1

# 1.2.156.10260.4.1.x: identity fields of Chinese CA certificates.
ID_CARD_NUMBER_OID = ObjectIdentifier("1.2.156.10260.4.1.1")
USCC_OID = ObjectIdentifier("1.2.156.10260.4.1.4")

Kind = Literal["person", "enterprise"]
KeyKind = Literal["rsa2048", "p256", "ed25519", "sm2"]
IdentityPlacement = Literal["extension", "subject", "both"]

ROOT = "root"
INTERMEDIATE_CAS = ("rsa", "p256", "sm2")
CA_NAMES = (*INTERMEDIATE_CAS, ROOT)
# OCSP responders listen on consecutive ports from ``ocsp_port``, in this order.
OCSP_PORT_OFFSETS = {"rsa": 0, "p256": 1, ROOT: 2, "sm2": 3}

CA_SUBJECT_NAMES = {
    ROOT: "CertGate Test Root CA",
    "rsa": "CertGate Test RSA CA",
    "p256": "CertGate Test P-256 CA",
    "sm2": "CertGate Test SM2 CA",
}
# The SM2 CA is an SM2 key under the RSA root: a mixed chain, as Chinese CAs' SM2 roots are not
# in the usual trust stores and integrators often anchor on one root for both.
CA_KEYS: dict[str, KeyKind] = {ROOT: "rsa2048", "rsa": "rsa2048", "p256": "p256", "sm2": "sm2"}
ROOT_VALIDITY = timedelta(days=20 * 365)
INTERMEDIATE_VALIDITY = timedelta(days=10 * 365)
OCSP_SIGNER_VALIDITY = timedelta(days=10 * 365)
# Intermediate CAs added to the PKI after its first release: a folder made before gets them when
# it is next opened (a demo's .demo/pki keeps working and gains the SM2 CA).
ADDED_CAS = ("sm2",)
DEFAULT_CRL_VALIDITY = timedelta(days=7)

KEY_USAGE_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
EXTENDED_KEY_USAGES = {
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "time_stamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
REVOCATION_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "certificate_hold": x509.ReasonFlags.certificate_hold,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aa_compromise": x509.ReasonFlags.aa_compromise,
}
assert set(REVOCATION_REASONS) == set(REVOCATION_REASON_TEXT) - {"remove_from_crl"}


class PkiError(Exception):
    """Root of the test PKI's errors; the message is one line a person understands."""


class PkiNotFound(PkiError):
    """The folder holds no test PKI, or its state file is unreadable."""


class PkiInputError(PkiError, ValueError):
    """An argument is not acceptable (identifier checksum, key kind, CA name, ...)."""


class UnknownSerial(PkiError, LookupError):
    """No certificate with this serial was issued by this PKI."""


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    private_key: PrivateKey | None
    chain: list[x509.Certificate]  # intermediate first, then root
    cert_path: Path
    key_path: Path | None
    chain_path: Path

    @property
    def serial(self) -> int:
        return self.certificate.serial_number


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    certificate: x509.Certificate
    private_key: PrivateKey


# --- small building blocks -------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _moment(at: datetime | None) -> datetime:
    """``at`` as an aware UTC datetime (naive means UTC), or now."""
    if at is None:
        return _now()
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def random_serial_number() -> int:
    """16 random bytes, positive: the top bit is clear and the next one set (fixed DER length)."""
    return (1 << 126) | secrets.randbits(126)


KEY_GENERATORS: dict[str, Callable[[], PrivateKey]] = {
    "rsa2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "sm2": Sm2PrivateKey.generate,
}


def generate_private_key(key: str) -> PrivateKey:
    if key not in KEY_GENERATORS:
        raise PkiInputError(f"unknown key type {key!r}; use one of {', '.join(KEY_GENERATORS)}")
    return KEY_GENERATORS[key]()


def _printable_string_der(value: str) -> bytes:
    """DER PrintableString (identifiers are digits and upper-case letters)."""
    encoded = value.encode("ascii")
    if len(encoded) > 127:
        raise PkiInputError("identifier too long")
    return bytes([0x13, len(encoded)]) + encoded


def _key_usage(names: Sequence[str]) -> x509.KeyUsage:
    unknown = set(names) - set(KEY_USAGE_NAMES)
    if unknown:
        raise PkiInputError(f"unknown key usage {', '.join(sorted(unknown))}")
    flags = {name: name in names for name in KEY_USAGE_NAMES}
    return x509.KeyUsage(**flags)


def _extended_key_usage(names: Sequence[str]) -> x509.ExtendedKeyUsage:
    unknown = [name for name in names if name not in EXTENDED_KEY_USAGES]
    if unknown:
        raise PkiInputError(f"unknown extended key usage {', '.join(unknown)}")
    return x509.ExtendedKeyUsage([EXTENDED_KEY_USAGES[name] for name in names])


def _check_text(label: str, value: str) -> str:
    if not value.strip() or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise PkiInputError(f"{label} must be non-empty text without control characters")
    return value.strip()


def _checked_identifier(label: str, value: str, valid: bool, check: bool) -> str:
    if check and not valid:
        raise PkiInputError(f"invalid {label} {value!r}: wrong format or check character")
    return value


# --- the PKI -----------------------------------------------------------------------------------


class TestPki:
    """A test PKI in a folder: ``TestPki.create`` makes one, ``TestPki.open`` reopens it."""

    __test__ = False  # a library class, not a pytest test case

    def __init__(self, directory: Path, state: dict[str, Any]) -> None:
        self.directory = directory
        self._state = state
        self._state_signature = self._stat_state()
        self._authorities: dict[str, CertificateAuthority] = {}
        self._lock_depth = 0

    # ---- creation and loading

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        crl_port: int = 18701,
        ocsp_port: int = 18702,
        at: datetime | None = None,
        host: str = "127.0.0.1",
        crl_validity: timedelta = DEFAULT_CRL_VALIDITY,
    ) -> TestPki:
        """Make a root CA, the RSA-2048 and P-256 intermediates, their CRLs and OCSP signers."""
        directory = Path(directory)
        if (directory / STATE_FILE).exists():
            raise PkiInputError(f"{directory} already holds a test PKI")
        for label, port in (("CRL port", crl_port), ("OCSP port", ocsp_port)):
            if not 0 < port < 65536 - len(CA_NAMES):
                raise PkiInputError(f"{label} {port} is out of range")
        directory.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "host": host,
            "crl_port": crl_port,
            "ocsp_port": ocsp_port,
            "crl_validity_seconds": int(crl_validity.total_seconds()),
            "crl_numbers": {name: 0 for name in CA_NAMES},
            "certificates": {},
        }
        pki = cls(directory, state)
        pki._create_authorities(_moment(at))
        return pki

    @classmethod
    def open(cls, directory: Path) -> TestPki:
        """Reopen a test PKI; ``PkiNotFound`` when the folder holds none or it is unreadable."""
        directory = Path(directory)
        state_path = directory / STATE_FILE
        if not directory.is_dir():
            raise PkiNotFound(f"PKI folder {directory} does not exist; run `certgate pki init`")
        if not state_path.is_file():
            raise PkiNotFound(f"{directory} holds no test PKI ({STATE_FILE} missing)")
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PkiNotFound(f"{state_path} is unreadable: {error}") from error
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise PkiNotFound(f"{state_path} is not a format-{STATE_FORMAT} test PKI state file")
        pki = cls(directory, state)
        for name in CA_NAMES:
            if name in ADDED_CAS and not pki._ca_path(name, "ca.pem").exists():
                continue
            if not pki._ca_path(name, "ca.pem").is_file():
                raise PkiNotFound(f"{directory} is incomplete: {name}/ca.pem missing")
        for name in ADDED_CAS:
            if not pki._ca_path(name, "ca.pem").is_file():
                pki._add_intermediate(name, _now())
        return pki

    def _add_intermediate(self, name: str, at: datetime) -> None:
        """An intermediate CA this PKI gained after the folder was made (SM2), made on open."""
        with self._exclusive():
            if self._ca_path(name, "ca.pem").is_file():
                return
            self._state["crl_numbers"].setdefault(name, 0)
            self._create_intermediate(name, at)
            self._issue_ocsp_signer(name, at)
            self._save_state()
            self.publish_crl(name, at=at)
            self._write_index(name)

    def _create_intermediate(self, name: str, at: datetime) -> None:
        root = self.authority(ROOT)
        key = generate_private_key(CA_KEYS[name])
        certificate = self._sign_ca(
            name, self._ca_subject(name), key.public_key(), root.certificate.subject,
            root.private_key, at,
        )  # fmt: skip
        self._store_authority(CertificateAuthority(name, certificate, key))
        self._record(certificate, ca=ROOT, kind="ca", cert_path=self._ca_path(name, "ca.pem"))

    def _create_authorities(self, at: datetime) -> None:
        root_key = generate_private_key(CA_KEYS[ROOT])
        root_name = self._ca_subject(ROOT)
        root = self._sign_ca(ROOT, root_name, root_key.public_key(), root_name, root_key, at)
        self._store_authority(CertificateAuthority(ROOT, root, root_key))
        for name in INTERMEDIATE_CAS:
            self._create_intermediate(name, at)
        for name in CA_NAMES:
            self._issue_ocsp_signer(name, at)
        self._save_state()
        for name in CA_NAMES:
            self.publish_crl(name, at=at)
            self._write_index(name)

    # ---- accessors

    @property
    def host(self) -> str:
        return str(self._state["host"])

    @property
    def crl_port(self) -> int:
        return int(self._state["crl_port"])

    @property
    def ocsp_port(self) -> int:
        return int(self._state["ocsp_port"])

    @property
    def crl_validity(self) -> timedelta:
        return timedelta(seconds=int(self._state["crl_validity_seconds"]))

    @property
    def root_certificate(self) -> x509.Certificate:
        return self.authority(ROOT).certificate

    def intermediate_certificate(self, ca: str = "rsa") -> x509.Certificate:
        return self.authority(self._intermediate_name(ca)).certificate

    def chain(self, ca: str = "rsa") -> list[x509.Certificate]:
        """The issuing chain of a leaf: [intermediate, root]."""
        return [self.intermediate_certificate(ca), self.root_certificate]

    def ca_certificate_path(self, ca: str) -> Path:
        return self._ca_path(self._ca_name(ca), "ca.pem")

    def ocsp_signer_paths(self, ca: str) -> tuple[Path, Path]:
        """(certificate, key) of the CA's delegated OCSP signer."""
        name = self._ca_name(ca)
        return self._ca_path(name, "ocsp.pem"), self._ca_path(name, "ocsp.key")

    def index_path(self, ca: str) -> Path:
        return self._ca_path(self._ca_name(ca), "index.txt")

    def crl_path(self, ca: str = "rsa") -> Path:
        return self._ca_path(self._ca_name(ca), "crl.der")

    def crl(self, ca: str = "rsa") -> x509.CertificateRevocationList:
        return x509.load_der_x509_crl(self.crl_path(ca).read_bytes())

    def crl_url(self, ca: str = "rsa") -> str:
        return f"http://{self._url_host()}:{self.crl_port}/{self._ca_name(ca)}.crl"

    def ca_issuers_url(self, ca: str) -> str:
        return f"http://{self._url_host()}:{self.crl_port}/{self._ca_name(ca)}.crt"

    def ocsp_port_of(self, ca: str) -> int:
        return self.ocsp_port + OCSP_PORT_OFFSETS[self._ca_name(ca)]

    def ocsp_url(self, ca: str = "rsa") -> str:
        return f"http://{self._url_host()}:{self.ocsp_port_of(ca)}/"

    def authority(self, ca: str) -> CertificateAuthority:
        name = self._ca_name(ca)
        if name not in self._authorities:
            certificate = x509.load_pem_x509_certificate(self._ca_path(name, "ca.pem").read_bytes())
            key = load_private_key_pem(self._ca_path(name, "ca.key").read_bytes())
            if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Sm2PrivateKey):
                raise PkiNotFound(f"{name}/ca.key is not an RSA, EC or SM2 private key")
            self._authorities[name] = CertificateAuthority(name, certificate, key)
        return self._authorities[name]

    def issued_serials(self) -> dict[int, dict[str, Any]]:
        """Every certificate this PKI signed (CAs, OCSP signers, leaves): serial -> record."""
        self._refresh_state()
        return {int(key, 16): dict(value) for key, value in self._state["certificates"].items()}

    def issuing_ca(self, serial: int) -> str:
        """Name of the CA that signed ``serial`` ("root" for the intermediates)."""
        return str(self._record_of(serial)["ca"])

    def certificate(self, serial: int) -> x509.Certificate:
        record = self._record_of(serial)
        return x509.load_pem_x509_certificate((self.directory / record["cert_path"]).read_bytes())

    # ---- issuing

    def issue(
        self,
        kind: Kind,
        name: str,
        *,
        id_number: str | None = None,
        uscc: str | None = None,
        key: KeyKind = "rsa2048",
        ca: str = "rsa",
        valid_days: int = 365,
        not_before: datetime | None = None,
        public_key: PublicKey | None = None,
        common_name: str | None = None,
        identity_in: IdentityPlacement = "extension",
        extended_key_usage: Sequence[str] = ("client_auth",),
        key_usage: Sequence[str] = ("digital_signature",),
        at: datetime | None = None,
        check_identifiers: bool = True,
    ) -> IssuedCertificate:
        """Issue a client certificate shaped like a Chinese CA's (see docs/test-pki.md).

        ``public_key`` issues for a key held elsewhere (a SoftHSM token): then ``private_key`` is
        None. ``check_identifiers=False`` lets a test issue a certificate carrying an identifier
        with a wrong check character, to exercise the engine's refusal.
        """
        identity_oid, identifier = self._identity(kind, id_number, uscc, check_identifiers)
        name = _check_text("name", name)
        issuer = self.authority(self._intermediate_name(ca))
        if valid_days < 1:
            raise PkiInputError(f"--valid-days must be at least 1, not {valid_days}")
        if identity_in not in ("extension", "subject", "both"):
            raise PkiInputError(f"identity_in must be extension, subject or both: {identity_in!r}")
        starts = _moment(not_before if not_before is not None else at)
        private_key = None if public_key is not None else generate_private_key(key)
        subject_key: PublicKey
        if private_key is not None:
            subject_key = private_key.public_key()
        else:
            assert public_key is not None
            subject_key = public_key
        subject = self._leaf_subject(kind, name, identifier, identity_oid, common_name, identity_in)
        builder = self._leaf_builder(issuer, subject, subject_key, starts, valid_days)
        builder = self._with_usages(builder, key_usage, extended_key_usage)
        if identity_in in ("extension", "both"):
            builder = builder.add_extension(
                x509.UnrecognizedExtension(identity_oid, _printable_string_der(identifier)),
                critical=False,
            )
        certificate = sign_certificate(builder, subject_key, issuer.private_key)
        return self._store_leaf(certificate, private_key, kind, issuer.name)

    def _identity(
        self, kind: str, id_number: str | None, uscc: str | None, check: bool
    ) -> tuple[ObjectIdentifier, str]:
        if kind == "person":
            if uscc is not None or id_number is None:
                raise PkiInputError("a person certificate needs --id-number and no --uscc")
            number = normalize_identifier(id_number)
            valid = is_valid_id_card_number(number)
            return ID_CARD_NUMBER_OID, _checked_identifier("ID-card number", number, valid, check)
        if kind == "enterprise":
            if id_number is not None or uscc is None:
                raise PkiInputError("an enterprise certificate needs --uscc and no --id-number")
            code = normalize_identifier(uscc)
            valid = is_valid_uscc(code)
            return USCC_OID, _checked_identifier("unified social credit code", code, valid, check)
        raise PkiInputError(f"unknown certificate kind {kind!r}; use person or enterprise")

    @staticmethod
    def _leaf_subject(
        kind: str,
        name: str,
        identifier: str,
        identity_oid: ObjectIdentifier,
        common_name: str | None,
        identity_in: str,
    ) -> x509.Name:
        attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
        if kind == "enterprise":
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, name))
        cn = _check_text("common name", common_name) if common_name is not None else name
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        if kind == "enterprise":
            attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, identifier))
        if identity_in in ("subject", "both"):
            attributes.append(x509.NameAttribute(identity_oid, identifier))
        return x509.Name(attributes)

    def _leaf_builder(
        self,
        issuer: CertificateAuthority,
        subject: x509.Name,
        public_key: PublicKey,
        starts: datetime,
        valid_days: int,
    ) -> x509.CertificateBuilder:
        """Everything but the public key (``sign_certificate`` sets it)."""
        issuer_key_id = key_identifier(issuer.private_key.public_key())
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.certificate.subject)
            .serial_number(random_serial_number())
            .not_valid_before(starts)
            .not_valid_after(starts + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_identifier(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id),
                critical=False,
            )
            .add_extension(self._distribution_points(issuer.name), critical=False)
            .add_extension(self._authority_information_access(issuer.name), critical=False)
        )

    @staticmethod
    def _with_usages(
        builder: x509.CertificateBuilder, key_usage: Sequence[str], extended: Sequence[str]
    ) -> x509.CertificateBuilder:
        if key_usage:
            builder = builder.add_extension(_key_usage(key_usage), critical=True)
        if extended:
            builder = builder.add_extension(_extended_key_usage(extended), critical=False)
        return builder

    def _store_leaf(
        self,
        certificate: x509.Certificate,
        private_key: PrivateKey | None,
        kind: str,
        ca: str,
    ) -> IssuedCertificate:
        stem = self.directory / "issued" / serial_hex(certificate.serial_number)
        cert_path = stem.with_suffix(".pem")
        chain = self.chain(ca)
        write_atomically(cert_path, certificates_pem([certificate]))
        chain_path = stem.with_name(stem.name + "-chain.pem")
        write_atomically(chain_path, certificates_pem([certificate, *chain]))
        key_path = None
        if private_key is not None:
            key_path = stem.with_suffix(".key")
            write_atomically(key_path, private_key_pem(private_key), PRIVATE_FILE_MODE)
        with self._exclusive():
            self._record(certificate, ca=ca, kind=kind, cert_path=cert_path, key_path=key_path)
            self._save_state()
            self._write_index(ca)
        self._notify_responder(ca, certificate.serial_number)
        return IssuedCertificate(certificate, private_key, chain, cert_path, key_path, chain_path)

    # ---- revocation

    def revoke(
        self, serial: int, *, reason: str = "unspecified", at: datetime | None = None
    ) -> None:
        """Revoke a certificate: its CA's CRL is republished and the OCSP index updated."""
        if reason not in REVOCATION_REASONS:
            raise PkiInputError(
                f"unknown revocation reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}"
            )
        moment = _moment(at)
        with self._exclusive():
            record = self._record_of(serial)
            if record.get("revoked_at"):
                raise PkiInputError(f"certificate {serial_hex(serial)} is already revoked")
            record["revoked_at"] = moment.isoformat()
            record["reason"] = reason
            self._save_state()
            ca = record["ca"]
            self.publish_crl(ca, at=moment)
            self._write_index(ca)
        self._notify_responder(ca, serial)

    def publish_crl(
        self, ca: str = "rsa", *, at: datetime | None = None, next_update: datetime | None = None
    ) -> x509.CertificateRevocationList:
        """Sign and write a new CRL for ``ca`` (its CRL number goes up by one)."""
        with self._exclusive():
            return self._publish_crl(self.authority(ca), _moment(at), next_update)

    def _publish_crl(
        self, authority: CertificateAuthority, moment: datetime, next_update: datetime | None
    ) -> x509.CertificateRevocationList:
        numbers = self._state["crl_numbers"]
        numbers[authority.name] = int(numbers[authority.name]) + 1
        issuer_key_id = key_identifier(authority.private_key.public_key())
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(authority.certificate.subject)
            .last_update(moment)
            .next_update(_moment(next_update) if next_update else moment + self.crl_validity)
            .add_extension(x509.CRLNumber(numbers[authority.name]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id),
                critical=False,
            )
        )
        for serial, record in self.issued_serials().items():
            if record["ca"] == authority.name and record.get("revoked_at"):
                builder = builder.add_revoked_certificate(self._revoked_entry(serial, record))
        crl = sign_crl(builder, authority.private_key)
        write_atomically(
            self._ca_path(authority.name, "crl.der"), crl.public_bytes(serialization.Encoding.DER)
        )
        write_atomically(
            self._ca_path(authority.name, "crl.pem"), crl.public_bytes(serialization.Encoding.PEM)
        )
        self._save_state()
        return crl

    @staticmethod
    def _revoked_entry(serial: int, record: dict[str, Any]) -> x509.RevokedCertificate:
        builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(datetime.fromisoformat(record["revoked_at"]))
        )
        reason = record.get("reason") or "unspecified"
        if reason != "unspecified":  # RFC 5280 5.3.1: omit the reason code rather than unspecified
            builder = builder.add_extension(
                x509.CRLReason(REVOCATION_REASONS[reason]), critical=False
            )
        return builder.build()

    # ---- serving

    @contextmanager
    def serve(self) -> Iterator[RunningPki]:
        """Serve the CRLs over HTTP and run one ``openssl ocsp`` responder per CA."""
        from softhsm.pki_server import RunningPki

        running = RunningPki(self)
        running.start()
        try:
            yield running
        finally:
            running.stop()

    # ---- internals

    @staticmethod
    def _ca_name(ca: str) -> str:
        if ca not in CA_NAMES:
            raise PkiInputError(f"unknown CA {ca!r}; use one of {', '.join(CA_NAMES)}")
        return ca

    @staticmethod
    def _intermediate_name(ca: str) -> str:
        if ca not in INTERMEDIATE_CAS:
            raise PkiInputError(
                f"unknown issuing CA {ca!r}; use one of {', '.join(INTERMEDIATE_CAS)}"
            )
        return ca

    def _ca_path(self, name: str, file_name: str) -> Path:
        return self.directory / name / file_name

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @staticmethod
    def _ca_subject(name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CertGate Test PKI"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "FOR TESTING ONLY"),
                x509.NameAttribute(NameOID.COMMON_NAME, CA_SUBJECT_NAMES[name]),
            ]
        )

    def _distribution_points(self, ca: str) -> x509.CRLDistributionPoints:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(self.crl_url(ca))],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        return x509.CRLDistributionPoints([point])

    def _authority_information_access(self, ca: str) -> x509.AuthorityInformationAccess:
        return x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(self.ocsp_url(ca)),
                ),
                x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.CA_ISSUERS,
                    x509.UniformResourceIdentifier(self.ca_issuers_url(ca)),
                ),
            ]
        )

    def _sign_ca(
        self,
        name: str,
        subject: x509.Name,
        public_key: PublicKey,
        issuer_name: x509.Name,
        issuer_key: PrivateKey,
        at: datetime,
    ) -> x509.Certificate:
        is_root = name == ROOT
        validity = ROOT_VALIDITY if is_root else INTERMEDIATE_VALIDITY
        issuer_key_id = key_identifier(issuer_key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .serial_number(random_serial_number())
            .not_valid_before(at)
            .not_valid_after(at + validity)
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=1 if is_root else 0), critical=True
            )
            .add_extension(
                _key_usage(("digital_signature", "key_cert_sign", "crl_sign")), critical=True
            )
            .add_extension(key_identifier(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id),
                critical=False,
            )
        )
        if not is_root:
            builder = builder.add_extension(self._distribution_points(ROOT), critical=False)
            builder = builder.add_extension(
                self._authority_information_access(ROOT), critical=False
            )
        return sign_certificate(builder, public_key, issuer_key)

    def _issue_ocsp_signer(self, ca: str, at: datetime) -> None:
        authority = self.authority(ca)
        key = generate_private_key(CA_KEYS[ca])
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CertGate Test PKI"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_SUBJECT_NAMES[ca]} OCSP Responder"),
            ]
        )
        issuer_key_id = key_identifier(authority.private_key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(authority.certificate.subject)
            .serial_number(random_serial_number())
            .not_valid_before(at)
            .not_valid_after(at + OCSP_SIGNER_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(("digital_signature",)), critical=True)
            .add_extension(_extended_key_usage(("ocsp_signing",)), critical=False)
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .add_extension(key_identifier(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id),
                critical=False,
            )
        )
        certificate = sign_certificate(builder, key.public_key(), authority.private_key)
        cert_path, key_path = self.ocsp_signer_paths(ca)
        write_atomically(cert_path, certificates_pem([certificate]))
        write_atomically(key_path, private_key_pem(key), PRIVATE_FILE_MODE)
        self._record(certificate, ca=ca, kind="ocsp_signer", cert_path=cert_path, key_path=key_path)

    def _store_authority(self, authority: CertificateAuthority) -> None:
        write_atomically(
            self._ca_path(authority.name, "ca.pem"), certificates_pem([authority.certificate])
        )
        write_atomically(
            self._ca_path(authority.name, "ca.key"),
            private_key_pem(authority.private_key),
            PRIVATE_FILE_MODE,
        )
        self._authorities[authority.name] = authority

    def _record(
        self,
        certificate: x509.Certificate,
        *,
        ca: str,
        kind: str,
        cert_path: Path,
        key_path: Path | None = None,
    ) -> None:
        self._state["certificates"][serial_hex(certificate.serial_number)] = {
            "ca": ca,
            "kind": kind,
            "subject": certificate.subject.rfc4514_string(),
            "openssl_subject": oneline_subject(certificate.subject),
            "not_after": certificate.not_valid_after_utc.isoformat(),
            "cert_path": str(cert_path.relative_to(self.directory)),
            "key_path": str(key_path.relative_to(self.directory)) if key_path else None,
            "revoked_at": None,
            "reason": None,
        }

    def _record_of(self, serial: int) -> dict[str, Any]:
        self._refresh_state()
        record = self._state["certificates"].get(serial_hex(serial))
        if record is None:
            raise UnknownSerial(f"no certificate with serial {serial_hex(serial)} in this PKI")
        return record

    def _save_state(self) -> None:
        text = json.dumps(self._state, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        write_atomically(self.directory / STATE_FILE, text.encode("utf-8"))
        self._state_signature = self._stat_state()

    def _stat_state(self) -> tuple[int, int] | None:
        try:
            status = (self.directory / STATE_FILE).stat()
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_mtime_ns

    def _refresh_state(self) -> None:
        """Re-read the state file when another process (``certgate pki``) replaced it."""
        if self._lock_depth or self._stat_state() == self._state_signature:
            return
        state_path = self.directory / STATE_FILE
        self._state = json.loads(state_path.read_text(encoding="utf-8"))
        self._state_signature = self._stat_state()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the folder's lock while changing state, so concurrent processes never lose an
        update; re-entrant within one object."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with open(self.directory / ".lock", "a+b") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            self._refresh_state()
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write_index(self, ca: str) -> None:
        entries = []
        for serial, record in self.issued_serials().items():
            if record["ca"] != ca:
                continue
            revoked_at = record.get("revoked_at")
            entries.append(
                IndexEntry(
                    serial=serial,
                    not_after=datetime.fromisoformat(record["not_after"]),
                    subject=record["openssl_subject"],
                    revoked_at=datetime.fromisoformat(revoked_at) if revoked_at else None,
                    reason=record.get("reason"),
                )
            )
        write_openssl_index(self.index_path(ca), entries)

    def _notify_responder(self, ca: str, serial: int) -> None:
        from softhsm.pki_server import notify_responder

        notify_responder(self, ca, serial)
