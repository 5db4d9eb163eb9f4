"""Trust anchors: the operator's records (``certgate trust``), ``certgate.toml`` entries, and the
certificate engine built from them once at start-up.

An anchor entry, in the database or in ``[[trust.anchors]]``::

    name = "Test Root CA"
    certificate = "/etc/certgate/root.pem"        # file path (toml) or PEM text (database)
    revocation = "hard-fail"                      # hard-fail | soft-fail | off
    crl = ["/etc/certgate/root.crl", "http://crl.example.cn/root.crl"]
    ocsp = "http://ocsp.example.cn"               # overrides the certificates' AIA
    mapping = { lookups = ["enterprise: unified_social_credit_code", "person: id_card_number"] }
    hardware_keys = false                         # true: the CA issues keys on tokens only
    policies = { initial = ["1.2.156.112559.1.1.1"], require_explicit = true }  # RFC 5280 §6.1
    minimum_rsa_bits = 2048                       # 1024 only for a CA still issuing such keys
    sm2_signer_id = "1234567812345678"            # GM/T 0009 signer ID of its SM2 signatures

Every field is checked when the app starts; a bad one raises ``ConfigError`` naming the file (or
the database record) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from flask import Flask, current_app
from sqlalchemy import select

from certs.extensions import basic_constraints
from certs.mapping import MappingRule, MappingRuleError
from certs.policy import (
    ANY_POLICY,
    RECOMMENDED_RSA_BITS,
    PolicyInputs,
    RevocationMode,
    TrustAnchor,
    ValidationPolicy,
)
from certs.sm2 import DEFAULT_SIGNER_ID
from gateway.config import ConfigError
from gateway.storage.database import Database
from gateway.storage.models import TrustAnchorRecord

EXTENSION = "certgate.trust"

DEFAULT_MAPPING: Mapping[str, Any] = {
    "lookups": ["enterprise: unified_social_credit_code", "person: id_card_number"],
}
ANCHOR_KEYS = (
    "name",
    "certificate",
    "intermediates",
    "revocation",
    "crl",
    "ocsp",
    "mapping",
    "hardware_keys",
    "policies",
    "minimum_rsa_bits",
    "sm2_signer_id",
)
POLICY_KEYS = ("initial", "require_explicit", "inhibit_mapping", "inhibit_any")


@dataclass(frozen=True)
class GatewayTrustAnchor(TrustAnchor):
    """A trust anchor with what the gateway alone needs of it.

    ``hardware_keys``: the operator states that this CA issues keys on hardware tokens only, so a
    key that chains here is hardware-held (``amr`` "hwk", gateway/assurance.py). False unless
    configured: nothing in a certificate or a signature shows where the key lives."""

    hardware_keys: bool = False


class TrustInputError(ValueError):
    """Operator input for ``certgate trust`` refused; the message names the field."""


def load_certificate_pem(data: bytes, where: str) -> x509.Certificate:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            return x509.load_der_x509_certificate(data)
        except ValueError:
            raise ConfigError(f"{where}: not a PEM or DER certificate") from None
    if len(certificates) != 1:
        raise ConfigError(f"{where}: holds {len(certificates)} certificates; give exactly one")
    return certificates[0]


def _crl_sources(value: Any, where: str, base: Path | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{where}: a list of CRL files or http(s) URLs")
    sources = []
    for n, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{where}[{n}]: a CRL file path or http(s) URL")
        if item.startswith(("http://", "https://")):
            sources.append(item)
            continue
        path = Path(item) if base is None or Path(item).is_absolute() else base / item
        if not path.is_file():
            raise ConfigError(f"{where}[{n}]: no such CRL file {str(path)!r}")
        sources.append(str(path))
    return tuple(sources)


def parse_anchor(
    entry: Mapping[str, Any],
    where: str,
    *,
    certificate_data: bytes | None = None,
    base: Path | None = None,
) -> TrustAnchor:
    """A ``TrustAnchor`` from one entry; ``certificate_data`` when the PEM is already at hand."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: a trust anchor is a table")
    unknown = set(entry) - set(ANCHOR_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(ANCHOR_KEYS)}"
        )
    if certificate_data is None:
        location = entry.get("certificate")
        if not isinstance(location, str) or not location:
            raise ConfigError(f"{where}.certificate: the path of the anchor's certificate")
        path = Path(location) if base is None or Path(location).is_absolute() else base / location
        try:
            certificate_data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{where}.certificate: cannot read {str(path)!r} ({exc.strerror or exc})"
            ) from None
    certificate = load_certificate_pem(certificate_data, f"{where}.certificate")
    try:
        mode = RevocationMode(entry.get("revocation", RevocationMode.HARD_FAIL.value))
    except ValueError:
        raise ConfigError(
            f"{where}.revocation: one of {', '.join(m.value for m in RevocationMode)}"
        ) from None
    ocsp = entry.get("ocsp")
    if ocsp is not None and (
        not isinstance(ocsp, str) or not ocsp.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"{where}.ocsp: an http(s) URL of an OCSP responder")
    policy = ValidationPolicy(
        revocation=mode,
        crl_sources=_crl_sources(entry.get("crl"), f"{where}.crl", base),
        ocsp_responder=ocsp,
        certificate_policies=_policy_inputs(entry.get("policies"), f"{where}.policies"),
        minimum_rsa_bits=_minimum_rsa_bits(entry.get("minimum_rsa_bits"), where),
        sm2_signer_id=_sm2_signer_id(entry.get("sm2_signer_id"), where),
    )
    try:
        rule = MappingRule.from_dict(
            entry.get("mapping") or DEFAULT_MAPPING, where=f"{where}.mapping"
        )
    except MappingRuleError as exc:
        raise ConfigError(str(exc)) from None
    name = entry.get("name") or certificate.subject.rfc4514_string()
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name: text")
    hardware_keys = entry.get("hardware_keys", False)
    if not isinstance(hardware_keys, bool):
        raise ConfigError(
            f"{where}.hardware_keys: true or false (true only when the CA issues keys on "
            "hardware tokens only)"
        )
    return GatewayTrustAnchor(
        certificate=certificate,
        policy=policy,
        name=name,
        mapping_rule=rule,
        hardware_keys=hardware_keys,
    )


def _sm2_signer_id(value: object, where: str) -> bytes:
    """The SM2 signer ID SM2-with-SM3 signatures under this anchor use (UTF-8 text)."""
    if value is None:
        return DEFAULT_SIGNER_ID
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > 8191:
        raise ConfigError(
            f"{where}.sm2_signer_id: text of 1 to 8191 bytes (default "
            f"{DEFAULT_SIGNER_ID.decode()}, the GM/T 0009 default Chinese CAs use)"
        )
    return value.encode("utf-8")


def _minimum_rsa_bits(value: object, where: str) -> int:
    if value is None:
        return RECOMMENDED_RSA_BITS
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 16384:
        raise ConfigError(
            f"{where}.minimum_rsa_bits: a key size from 1024 to 16384 (default "
            f"{RECOMMENDED_RSA_BITS}; 1024 only for a CA that still issues such keys)"
        )
    return value


def _policy_inputs(entry: object, where: str) -> PolicyInputs:
    """``policies = { initial = [OIDs], require_explicit, inhibit_mapping, inhibit_any }``:
    the certificate-policy inputs of RFC 5280 §6.1.1; absent, any policy is accepted."""
    if entry is None:
        return PolicyInputs()
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: a table with {', '.join(POLICY_KEYS)}")
    unknown = set(entry) - set(POLICY_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(POLICY_KEYS)}"
        )
    initial = entry.get("initial", [ANY_POLICY])
    if not isinstance(initial, list) or not initial or not all(isinstance(o, str) for o in initial):
        raise ConfigError(f"{where}.initial: a non-empty list of policy OIDs (dotted)")
    flags = {}
    for key in ("require_explicit", "inhibit_mapping", "inhibit_any"):
        value = entry.get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: true or false")
        flags[key] = value
    try:
        return PolicyInputs(
            user_initial_policy_set=frozenset(initial),
            initial_explicit_policy=flags["require_explicit"],
            initial_policy_mapping_inhibit=flags["inhibit_mapping"],
            initial_any_policy_inhibit=flags["inhibit_any"],
        )
    except ValueError:
        raise ConfigError(
            f"{where}.initial: policy OIDs in dotted form, e.g. 2.5.29.32.0"
        ) from None


def parse_intermediates(
    entry: Mapping[str, Any], where: str, *, data: bytes | None = None, base: Path | None = None
) -> tuple[x509.Certificate, ...]:
    """CA certificates below the anchor, offered to path building with every client chain.

    USB keys often hold only the user's certificate, so the gateway completes the chain itself.
    They are not trusted: a path still has to reach the anchor."""
    if data is not None:
        certificates = x509.load_pem_x509_certificates(data) if data.strip() else []
    else:
        paths = entry.get("intermediates") or []
        if isinstance(paths, str) or not isinstance(paths, Sequence):
            raise ConfigError(f"{where}.intermediates: a list of CA certificate files")
        certificates = []
        for n, location in enumerate(paths):
            if not isinstance(location, str) or not location:
                raise ConfigError(f"{where}.intermediates[{n}]: a certificate file path")
            path = (
                Path(location) if base is None or Path(location).is_absolute() else base / location
            )
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"{where}.intermediates[{n}]: cannot read {str(path)!r} ({exc.strerror or exc})"
                ) from None
            certificates.append(load_certificate_pem(content, f"{where}.intermediates[{n}]"))
    for n, certificate in enumerate(certificates):
        if not _is_ca(certificate):
            raise ConfigError(
                f"{where}.intermediates[{n}]: not a CA certificate (basicConstraints cA)"
            )
    return tuple(certificates)


def thumbprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class AnchorListing:
    name: str
    thumbprint: str
    subject: str
    revocation: str
    crl: tuple[str, ...]
    ocsp: str | None
    mapping: Mapping[str, Any] | None
    source: str
    intermediates: tuple[str, ...] = ()
    hardware_keys: bool = False


class TrustStore:
    """The operator's anchors in the database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(
        self,
        *,
        certificate_pem: bytes,
        name: str | None,
        revocation: str,
        crl: Sequence[str],
        ocsp: str | None,
        mapping: Mapping[str, Any] | None,
        at: datetime,
        intermediates: Sequence[bytes] = (),
        hardware_keys: bool = False,
    ) -> AnchorListing:
        entry: dict[str, Any] = {
            "revocation": revocation,
            "crl": list(crl),
            "ocsp": ocsp,
            "mapping": dict(mapping) if mapping else None,
            "hardware_keys": hardware_keys,
        }
        if name:
            entry["name"] = name
        try:
            anchor = parse_anchor(
                entry, "trust anchor", certificate_data=certificate_pem, base=Path.cwd()
            )
            below = [
                load_certificate_pem(data, f"intermediates[{n}]")
                for n, data in enumerate(intermediates)
            ]
            parse_intermediates({}, "trust anchor", data=_pem_bundle(below))
        except ConfigError as exc:
            raise TrustInputError(str(exc)) from None
        if not _is_ca(anchor.certificate):
            raise TrustInputError("certificate: not a CA certificate (basicConstraints cA)")
        digest = thumbprint(anchor.certificate)
        with self.database.session() as session:
            clash = session.scalars(
                select(TrustAnchorRecord).where(
                    (TrustAnchorRecord.name == anchor.display_name)
                    | (TrustAnchorRecord.thumbprint == digest)
                )
            ).first()
            if clash is not None:
                which = "name" if clash.name == anchor.display_name else "certificate"
                raise TrustInputError(f"{which}: already trusted as {clash.name!r}")
            record = TrustAnchorRecord(
                name=anchor.display_name,
                thumbprint=digest,
                subject=anchor.certificate.subject.rfc4514_string(),
                certificate_pem=anchor.certificate.public_bytes(serialization.Encoding.PEM).decode(
                    "ascii"
                ),
                revocation_mode=anchor.policy.revocation.value,
                crl_sources=json.dumps(list(anchor.policy.crl_sources)),
                ocsp_responder=ocsp,
                mapping_rule=json.dumps(mapping) if mapping else None,
                intermediates_pem=_pem_bundle(below).decode("ascii") or None,
                hardware_keys=hardware_keys,
                created_at=at,
            )
            session.add(record)
            session.flush()
            return _listing(record)

    def remove(self, name_or_thumbprint: str) -> AnchorListing:
        key = name_or_thumbprint.strip()
        with self.database.session() as session:
            record = session.scalars(
                select(TrustAnchorRecord).where(
                    (TrustAnchorRecord.name == key) | (TrustAnchorRecord.thumbprint == key.lower())
                )
            ).first()
            if record is None:
                raise TrustInputError(f"trust anchor {key!r}: not found")
            listing = _listing(record)
            session.delete(record)
            return listing

    def records(self) -> list[TrustAnchorRecord]:
        with self.database.session() as session:
            return list(
                session.scalars(select(TrustAnchorRecord).order_by(TrustAnchorRecord.id)).all()
            )

    def listings(self) -> list[AnchorListing]:
        return [_listing(record) for record in self.records()]


def _pem_bundle(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _is_ca(certificate: x509.Certificate) -> bool:
    constraints = basic_constraints(certificate)  # as certs reads it, DER quirks included
    return constraints is not None and constraints[0].ca


def _listing(record: TrustAnchorRecord) -> AnchorListing:
    return AnchorListing(
        name=record.name,
        thumbprint=record.thumbprint,
        subject=record.subject,
        revocation=record.revocation_mode,
        crl=tuple(json.loads(record.crl_sources or "[]")),
        ocsp=record.ocsp_responder,
        mapping=json.loads(record.mapping_rule) if record.mapping_rule else None,
        source="database",
        intermediates=tuple(
            c.subject.rfc4514_string()
            for c in x509.load_pem_x509_certificates(record.intermediates_pem.encode("ascii"))
        )
        if record.intermediates_pem
        else (),
        hardware_keys=bool(record.hardware_keys),
    )


@dataclass(frozen=True)
class TrustConfiguration:
    anchors: tuple[TrustAnchor, ...]
    intermediates: tuple[x509.Certificate, ...]


def load_trust_configuration(config: Mapping[str, Any], store: TrustStore) -> TrustConfiguration:
    """Every configured anchor (and the intermediates offered for path building), parsed and
    checked; ConfigError names the source and field."""
    anchors: list[TrustAnchor] = []
    intermediates: list[x509.Certificate] = []
    config_file = config.get("CONFIG_FILE")
    source = config.get("CONFIG_SOURCE", {}).get("TRUST_ANCHORS", "configuration")
    base = Path(config_file).parent if config_file else Path.cwd()
    for n, entry in enumerate(config["TRUST_ANCHORS"]):
        where = f"{source}: trust.anchors[{n}]"
        anchors.append(parse_anchor(entry, where, base=base))
        intermediates.extend(parse_intermediates(entry, where, base=base))
    for record in store.records():
        where = f"database trust anchor {record.name!r}"
        try:
            mapping = json.loads(record.mapping_rule) if record.mapping_rule else None
            crl = json.loads(record.crl_sources or "[]")
        except ValueError:
            raise ConfigError(f"{where}: stored JSON is damaged") from None
        entry = {
            "name": record.name,
            "revocation": record.revocation_mode,
            "crl": crl,
            "ocsp": record.ocsp_responder,
            "mapping": mapping,
            "hardware_keys": bool(record.hardware_keys),
        }
        anchors.append(
            parse_anchor(entry, where, certificate_data=record.certificate_pem.encode("ascii"))
        )
        try:
            intermediates.extend(
                parse_intermediates(
                    entry, where, data=(record.intermediates_pem or "").encode("ascii")
                )
            )
        except ValueError:
            raise ConfigError(f"{where}.intermediates: stored PEM is damaged") from None
    seen: dict[str, str] = {}
    for anchor in anchors:
        digest = thumbprint(anchor.certificate)
        if anchor.display_name in seen.values() or digest in seen:
            raise ConfigError(f"trust anchor {anchor.display_name!r}: configured twice")
        seen[digest] = anchor.display_name
    return TrustConfiguration(tuple(anchors), tuple(intermediates))


def init_app(app: Flask, database: Database) -> TrustStore:
    store = TrustStore(database)
    app.extensions[EXTENSION] = store
    return store


def get_trust_store(app: Flask | None = None) -> TrustStore:
    return (app or current_app).extensions[EXTENSION]
