"""`certgate cert`: the certificate engine on its own.

``certgate cert verify`` validates one certificate against trust anchors given on the command line,
checks revocation, and prints the chain and the identity CertGate reads from the certificate.
Exit status: 0 valid, 1 invalid (the error code says why), 2 usage error (bad option, missing,
unreadable or garbage file) — never a traceback for a bad input file.

Revocation defaults to ``hard-fail``, as for a trust anchor in the gateway: CRL files given with
``--crl`` and an OCSP responder given with ``--ocsp`` are used, and the certificates' own CRL
distribution points and OCSP addresses are followed over HTTP. Each fetch has one deadline for
the whole exchange (``--ocsp-timeout``, 5 s; ``--crl-timeout``, 10 s) and a size limit (OCSP
64 KiB; ``--crl-max-bytes``, 32 MiB); a responder that trickles, answers garbage, never ends or
never answers costs at most its deadline. A certificate whose status cannot be had — that
included, and a ``--crl`` file RFC 5280 makes unusable (an unknown critical extension) — is
refused with ``revocation_unavailable`` (exit 1).
``--revocation soft-fail`` accepts an unavailable status (with a warning); ``--revocation off``
checks nothing and touches no network.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from certs.errors import DEFAULT_LANGUAGE, LANGUAGES, CertGateError, CertificateUntrusted
from certs.fetch import CRL_MAX_BYTES, OCSP_MAX_RESPONSE_BYTES, FetchError, HttpFetcher
from certs.identity import CertificateIdentity, display_dn, extract_identity
from certs.policy import (
    ANY_POLICY,
    MINIMUM_RSA_BITS_FLOOR,
    RECOMMENDED_RSA_BITS,
    PolicyInputs,
    RevocationMode,
    TrustAnchor,
    ValidationPolicy,
)
from gateway.engine import certificate_algorithms, explain_unsupported

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

OCSP_TIMEOUT_SECONDS = 5.0
CRL_TIMEOUT_SECONDS = 10.0

# What each file option holds, for messages.
FILE_ROLES: Mapping[str, Mapping[str, str]] = {
    "certificate": {"zh-CN": "证书", "en": "certificate"},
    "chain": {"zh-CN": "中间证书（--chain）", "en": "--chain"},
    "trust": {"zh-CN": "信任锚（--trust）", "en": "--trust"},
    "crl": {"zh-CN": "CRL（--crl）", "en": "--crl"},
}

USAGE_MESSAGES: Mapping[str, Mapping[str, str]] = {
    "unreadable": {
        "zh-CN": "无法读取{role}文件 {path}：{reason}",
        "en": "cannot read {role} file {path}: {reason}",
    },
    "not_certificate": {
        "zh-CN": "{role}文件 {path} 不是 PEM 或 DER 格式的证书",
        "en": "{role} file {path} is not a PEM or DER certificate",
    },
    "not_crl": {
        "zh-CN": "{role}文件 {path} 不是 PEM 或 DER 格式的 CRL",
        "en": "{role} file {path} is not a PEM or DER CRL",
    },
    "crl_store": {
        "zh-CN": "无法加载 CRL 文件：{reason}",
        "en": "cannot load the CRL files: {reason}",
    },
    "no_trust": {
        "zh-CN": "至少需要一个 --trust 信任锚文件",
        "en": "give at least one trust anchor with --trust",
    },
    "bad_time": {
        "zh-CN": "--at 需要 ISO 8601 时间，例如 2026-01-31T08:00:00Z，而不是 {value!r}",
        "en": "--at takes an ISO 8601 time such as 2026-01-31T08:00:00Z, not {value!r}",
    },
    "bad_policy": {
        "zh-CN": "--policy 需要点分形式的证书策略 OID（如 2.5.29.32.0），而不是 {value!r}",
        "en": "--policy takes a certificate policy OID in dotted form (e.g. 2.5.29.32.0), "
        "not {value!r}",
    },
    "bad_ocsp_url": {
        "zh-CN": "--ocsp 需要 http:// 或 https:// 地址，而不是 {value!r}",
        "en": "--ocsp takes an http:// or https:// URL, not {value!r}",
    },
    "engine_missing": {
        "zh-CN": "此安装缺少证书验证模块（{module}）",
        "en": "this installation lacks the certificate validation module ({module})",
    },
}

VALID_MESSAGE = {"zh-CN": "证书有效。", "en": "The certificate is valid."}
KEY_CANNOT_SIGN = {
    "zh-CN": "证书链有效，但暂不支持证书密钥的算法 {algorithm}，不能用于签名登录。",
    "en": "The chain is valid, but the certificate's key algorithm {algorithm} is not supported "
    "for signing in.",
}
REFUSED_CRL = {"zh-CN": "CRL 文件不可用：{reason}", "en": "CRL file not usable: {reason}"}


@dataclass(frozen=True)
class FetchLimits:
    """One deadline per fetch (seconds) and the largest CRL downloaded (bytes)."""

    ocsp_timeout: float = OCSP_TIMEOUT_SECONDS
    crl_timeout: float = CRL_TIMEOUT_SECONDS
    crl_max_bytes: int = CRL_MAX_BYTES


class UsageProblem(Exception):
    """A command-line input the command cannot use; reported in one line, exit status 2."""

    def __init__(self, key: str, **fields: Any) -> None:
        super().__init__(key)
        self.key = key
        self.fields = fields

    def message(self, language: str) -> str:
        role = self.fields.get("role")
        fields = dict(self.fields)
        if role is not None:
            fields["role"] = FILE_ROLES[role][language]
        return USAGE_MESSAGES[self.key][language].format(**fields)


# --- reading the inputs -------------------------------------------------------------------------


def _read(path: str, role: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageProblem("unreadable", role=role, path=path, reason=exc.strerror or exc) from None


def load_certificates(path: str, role: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file (one or more), or the one in a DER file."""
    data = _read(path, role)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise UsageProblem("not_certificate", role=role, path=path) from None


def check_crl_file(path: str) -> None:
    """Refuse a missing or garbage CRL file here, with its name, before the engine loads it."""
    data = _read(path, "crl")
    try:
        if b"-----BEGIN" in data:
            x509.load_pem_x509_crl(data)
        else:
            x509.load_der_x509_crl(data)
    except ValueError:
        raise UsageProblem("not_crl", role="crl", path=path) from None


def parse_moment(text: str | None) -> datetime:
    """``--at``: an ISO 8601 time (UTC when it names no offset); now when not given."""
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageProblem("bad_time", value=text) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class VerifyRequest:
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    anchors: tuple[TrustAnchor, ...]
    crl_paths: tuple[str, ...]
    ocsp_url: str | None
    revocation: RevocationMode
    at: datetime


def _policy_inputs(
    oids: Sequence[str], explicit: bool, inhibit_mapping: bool, inhibit_any: bool
) -> PolicyInputs:
    for oid in oids:
        try:
            PolicyInputs(user_initial_policy_set=frozenset({oid}))
        except ValueError:
            raise UsageProblem("bad_policy", value=oid) from None
    return PolicyInputs(
        user_initial_policy_set=frozenset(oids or (ANY_POLICY,)),
        initial_explicit_policy=explicit,
        initial_policy_mapping_inhibit=inhibit_mapping,
        initial_any_policy_inhibit=inhibit_any,
    )


def build_request(
    certificate_path: str,
    chain_paths: Sequence[str],
    trust_paths: Sequence[str],
    crl_paths: Sequence[str],
    ocsp_url: str | None,
    revocation: str,
    at: str | None,
    policies: PolicyInputs,
    minimum_rsa_bits: int = RECOMMENDED_RSA_BITS,
) -> VerifyRequest:
    presented = load_certificates(certificate_path, "certificate")
    # A PEM CERT file may hold the whole chain: the first certificate is the one verified.
    intermediates = list(presented[1:])
    for path in chain_paths:
        intermediates += load_certificates(path, "chain")
    if not trust_paths:
        raise UsageProblem("no_trust")
    for path in crl_paths:
        check_crl_file(path)
    if ocsp_url is not None and not ocsp_url.lower().startswith(("http://", "https://")):
        raise UsageProblem("bad_ocsp_url", value=ocsp_url)
    mode = RevocationMode(revocation)
    policy = ValidationPolicy(
        revocation=mode,
        ocsp_responder=ocsp_url,
        certificate_policies=policies,
        minimum_rsa_bits=minimum_rsa_bits,
    )
    anchors = tuple(
        TrustAnchor(certificate, policy=policy)
        for path in trust_paths
        for certificate in load_certificates(path, "trust")
    )
    return VerifyRequest(
        leaf=presented[0],
        intermediates=tuple(intermediates),
        anchors=anchors,
        crl_paths=tuple(crl_paths),
        ocsp_url=ocsp_url,
        revocation=mode,
        at=parse_moment(at),
    )


# --- the engine ---------------------------------------------------------------------------------


def engine_module(name: str) -> Any:
    """An engine module imported on use; a one-line usage error when this build lacks it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise UsageProblem("engine_missing", module=name) from None


def _revocation_checker(
    request: VerifyRequest, limits: FetchLimits, refused_crls: list[str]
) -> Any:
    """The engine's revocation layer for this request; None when revocation is off.

    A ``--crl`` file that is a CRL but one RFC 5280 makes unusable (an unknown critical
    extension, a delta CRL, ...) is left out and its reason put in ``refused_crls``: the
    certificates it would have covered then have no status, which the revocation mode judges.
    """
    if request.revocation is RevocationMode.OFF:
        return None
    checker = engine_module("certs.revocation.checker")
    crl = engine_module("certs.revocation.crl")
    ocsp = engine_module("certs.revocation.ocsp")
    crls = crl.CrlStore(
        fetcher=HttpFetcher(max_bytes=limits.crl_max_bytes),
        fetch_timeout=limits.crl_timeout,
        max_bytes=limits.crl_max_bytes,
    )
    for path in request.crl_paths:
        try:
            crls.add_source(path, load=True)
        except crl.CrlInvalid as exc:
            refused_crls.append(str(exc))
        except (OSError, ValueError, FetchError) as exc:
            raise UsageProblem("crl_store", reason=exc) from None
    ocsp_client = ocsp.OcspClient.for_http(
        timeout=limits.ocsp_timeout, max_response_bytes=OCSP_MAX_RESPONSE_BYTES
    )
    return checker.RevocationChecker(crls=crls, ocsp=ocsp_client)


def validate(
    request: VerifyRequest,
    limits: FetchLimits = FetchLimits(),
    refused_crls: list[str] | None = None,
) -> Any:
    """The VerifiedChain, or the engine's CertGateError."""
    validation = engine_module("certs.validation")
    revocation = _revocation_checker(
        request, limits, refused_crls if refused_crls is not None else []
    )
    validator = validation.ChainValidator(request.anchors, revocation=revocation)
    return validator.validate(request.leaf, request.intermediates, at=request.at)


def _identity(certificate: x509.Certificate) -> CertificateIdentity | None:
    try:
        return extract_identity(certificate)
    except CertGateError:
        return None


# --- output -------------------------------------------------------------------------------------

TEXT_FIELDS: Mapping[str, Mapping[str, str]] = {
    "subject_dn_display": {"zh-CN": "主题", "en": "subject"},
    "serial": {"zh-CN": "序列号", "en": "serial"},
    "sha256": {"zh-CN": "SHA-256 指纹", "en": "SHA-256 thumbprint"},
    "unified_social_credit_code": {"zh-CN": "统一社会信用代码", "en": "unified social credit code"},
    "id_card_number": {"zh-CN": "身份证号码", "en": "ID-card number"},
    "organization_code": {"zh-CN": "组织机构代码", "en": "organization code"},
    "ca_entity_id": {"zh-CN": "CA 实体标识", "en": "CA entity identifier"},
    "subject_serial_number": {"zh-CN": "主题 serialNumber", "en": "subject serialNumber"},
    "emails": {"zh-CN": "电子邮件", "en": "e-mail"},
    "upns": {"zh-CN": "UPN", "en": "UPN"},
}
CHAIN_HEADING = {"zh-CN": "证书链", "en": "chain"}
WARNING_HEADING = {"zh-CN": "警告", "en": "warning"}
INVALID_HEADING = {"zh-CN": "无效标识", "en": "invalid identifier"}


def _echo_text(document: Mapping[str, Any], language: str) -> None:
    if document["ok"]:
        click.echo(document["message"])
    else:
        click.echo(f"{document['code']}: {document['message']}")
    for warning in document.get("warnings", []):
        click.echo(f"{WARNING_HEADING[language]}: {warning}")
    if document["chain"]:
        click.echo(f"{CHAIN_HEADING[language]}:")
        for depth, subject in enumerate(document["chain"]):
            click.echo(f"  {depth}: {subject}")
    identity = document["identity"]
    if identity is None:
        return
    for key, labels in TEXT_FIELDS.items():
        value = identity.get(key)
        if isinstance(value, list):
            value = ", ".join(value)
        if value:
            click.echo(f"{labels[language]}: {value}")
    for invalid in identity["invalid"]:
        click.echo(
            f"{INVALID_HEADING[language]}: {invalid['field']} {invalid['value_masked']}"
            f" ({invalid['reason']}; {invalid['source']})"
        )


def _emit(document: Mapping[str, Any], as_json: bool, language: str) -> None:
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        _echo_text(document, language)


@click.group()
def cert() -> None:
    """Validate certificates with the certificate engine."""


@cert.command()
@click.argument("certificate_path", metavar="CERT")
@click.option(
    "--chain",
    "chain_paths",
    multiple=True,
    metavar="F",
    help="Intermediate certificates (PEM, several per file, or DER).",
)
@click.option(
    "--trust",
    "trust_paths",
    multiple=True,
    metavar="F",
    help="Trust anchors (PEM, several per file, or DER). At least one.",
)
@click.option("--crl", "crl_paths", multiple=True, metavar="F", help="CRL files (PEM or DER).")
@click.option(
    "--ocsp",
    "ocsp_url",
    metavar="URL",
    help="OCSP responder to ask instead of the certificates' own.",
)
@click.option(
    "--revocation",
    type=click.Choice([m.value for m in RevocationMode]),
    default=RevocationMode.HARD_FAIL.value,
    show_default=True,
    help="hard-fail: refuse when no status can be had; soft-fail: allow that; "
    "off: do not check (no network).",
)
@click.option(
    "--minimum-rsa-bits",
    type=click.IntRange(MINIMUM_RSA_BITS_FLOOR, 16384),
    default=RECOMMENDED_RSA_BITS,
    show_default=True,
    help="Smallest RSA key accepted for CERT (old USB keys carry RSA-1024; accepted with a "
    "warning when allowed).",
)
@click.option(
    "--policy",
    "policy_oids",
    multiple=True,
    metavar="OID",
    help="An acceptable certificate policy (repeatable; default anyPolicy).",
)
@click.option(
    "--require-explicit-policy",
    is_flag=True,
    help="The chain must assert one of the acceptable policies (RFC 5280 §6.1).",
)
@click.option("--inhibit-policy-mapping", is_flag=True, help="Do not honour policyMappings.")
@click.option(
    "--inhibit-any-policy", is_flag=True, help="anyPolicy in CA certificates matches nothing."
)
@click.option(
    "--at",
    "at",
    metavar="ISO8601",
    help="Validate at this time instead of now (UTC unless an offset is given).",
)
@click.option(
    "--ocsp-timeout",
    type=click.FloatRange(0.1, 300),
    default=OCSP_TIMEOUT_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="One deadline for each OCSP request, connect to last byte.",
)
@click.option(
    "--crl-timeout",
    type=click.FloatRange(0.1, 3600),
    default=CRL_TIMEOUT_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="One deadline for each CRL download (distribution points).",
)
@click.option(
    "--crl-max-bytes",
    type=click.IntRange(1024, 2**32),
    default=CRL_MAX_BYTES,
    show_default=True,
    metavar="BYTES",
    help="The largest CRL downloaded; a larger one counts as unavailable.",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"ok", "code", "message", "chain", "identity"}.'
)
@click.option("--lang", "language", type=click.Choice(LANGUAGES), default=DEFAULT_LANGUAGE,
              show_default=True, help="Language of the messages.")  # fmt: skip
def verify(
    certificate_path: str,
    chain_paths: tuple[str, ...],
    trust_paths: tuple[str, ...],
    crl_paths: tuple[str, ...],
    ocsp_url: str | None,
    revocation: str,
    minimum_rsa_bits: int,
    policy_oids: tuple[str, ...],
    require_explicit_policy: bool,
    inhibit_policy_mapping: bool,
    inhibit_any_policy: bool,
    at: str | None,
    ocsp_timeout: float,
    crl_timeout: float,
    crl_max_bytes: int,
    as_json: bool,
    language: str,
) -> None:
    """Validate CERT (PEM or DER) and show the identity CertGate reads from it.

    Exit status 0 when valid, 1 when not, 2 for a usage error.
    """
    try:
        policies = _policy_inputs(
            policy_oids, require_explicit_policy, inhibit_policy_mapping, inhibit_any_policy
        )
        request = build_request(
            certificate_path,
            chain_paths,
            trust_paths,
            crl_paths,
            ocsp_url,
            revocation,
            at,
            policies,
            minimum_rsa_bits,
        )
        limits = FetchLimits(ocsp_timeout, crl_timeout, crl_max_bytes)
        document = _verify(request, language, limits)
    except UsageProblem as problem:
        message = problem.message(language)
        click.echo(f"certgate cert verify: {message}", err=True)
        if as_json:
            _emit(
                {"ok": False, "code": "bad_request", "message": message, "chain": [],
                 "identity": None},
                as_json=True, language=language,
            )  # fmt: skip
        click.get_current_context().exit(EXIT_USAGE)
    _emit(document, as_json, language)
    click.get_current_context().exit(EXIT_VALID if document["ok"] else EXIT_INVALID)


def _verify(
    request: VerifyRequest, language: str, limits: FetchLimits = FetchLimits()
) -> dict[str, Any]:
    identity = _identity(request.leaf)
    identity_json = identity.to_json() if identity is not None else None
    refused_crls: list[str] = []
    try:
        chain = validate(request, limits, refused_crls)
    except CertGateError as error:
        if isinstance(error, CertificateUntrusted):
            others = (*request.intermediates, *(a.certificate for a in request.anchors))
            error = explain_unsupported(error, request.leaf, others)
        if refused_crls:
            error.detail = "; ".join([error.detail, *refused_crls])
        return {
            "ok": False,
            "code": error.code,
            "message": error.message(language),
            # What exactly failed, in the engine's words (English), for the operator.
            "detail": error.detail,
            "chain": [],
            "identity": identity_json,
        }
    return {
        "ok": True,
        "code": "ok",
        "message": VALID_MESSAGE[language],
        "chain": [display_dn(certificate.subject) for certificate in chain.certificates],
        "identity": identity_json,
        "warnings": [
            *chain.warnings,
            *(REFUSED_CRL[language].format(reason=r) for r in refused_crls),
            *_key_warnings(request.leaf, language),
        ],
    }


def _key_warnings(leaf: x509.Certificate, language: str) -> list[str]:
    """A valid chain whose leaf key the gateway cannot verify a login signature with (DSA; SM2
    where no OpenSSL 3 libcrypto is found)."""
    return [KEY_CANNOT_SIGN[language].format(algorithm=a) for a in certificate_algorithms(leaf)]
