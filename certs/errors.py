"""Typed errors of the certificate engine, one class per stable DESIGN.md error code.

Every error carries the data a caller needs (``CertificateRevoked.reason``, ``.revoked_at``) and
renders a message a person understands, in zh-CN (the default) or English. ``detail`` is for the
operator's log: it may name the failing check, but never personal data.

``CertGateError`` is the root that the token and gateway packages extend too, so one handler can
turn any of them into the DESIGN.md JSON answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

DEFAULT_LANGUAGE = "zh-CN"
LANGUAGES = ("zh-CN", "en")


class CertGateError(Exception):
    """Root of every CertGate error that maps to a stable code."""

    code: ClassVar[str] = "bad_request"
    # Message templates per language; formatted with the error's ``fields()``.
    templates: ClassVar[Mapping[str, str]] = {
        "zh-CN": "请求无效。",
        "en": "The request is not valid.",
    }

    def __init__(self, detail: str = "", **fields: Any) -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        self._fields = fields

    def fields(self) -> dict[str, Any]:
        return dict(self._fields)

    def message(self, language: str = DEFAULT_LANGUAGE) -> str:
        template = self.templates.get(language) or self.templates[DEFAULT_LANGUAGE]
        return template.format(**self.fields())

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


class BadRequest(CertGateError):
    code = "bad_request"


class CertError(CertGateError):
    """Root of the certificate engine's errors."""

    code = "certificate_untrusted"


class CertificateUntrusted(CertError):
    code = "certificate_untrusted"
    templates = {
        "zh-CN": "证书不受信任：无法验证到受信任的根证书。",
        "en": "The certificate is not trusted: it does not chain to a trusted root.",
    }


class CertificateExpired(CertError):
    code = "certificate_expired"
    templates = {
        "zh-CN": "证书已于 {not_after:%Y-%m-%d} 过期，请更新证书。",
        "en": "The certificate expired on {not_after:%Y-%m-%d}; please renew it.",
    }

    def __init__(self, detail: str = "", *, not_after: datetime) -> None:
        super().__init__(detail, not_after=not_after)
        self.not_after = not_after


class CertificateNotYetValid(CertError):
    code = "certificate_not_yet_valid"
    templates = {
        "zh-CN": "证书尚未生效（生效时间 {not_before:%Y-%m-%d %H:%M} UTC）。",
        "en": "The certificate is not valid yet (valid from {not_before:%Y-%m-%d %H:%M} UTC).",
    }

    def __init__(self, detail: str = "", *, not_before: datetime) -> None:
        super().__init__(detail, not_before=not_before)
        self.not_before = not_before


# RFC 5280 CRLReason names, in English and Chinese, for messages.
REVOCATION_REASON_TEXT: Mapping[str, tuple[str, str]] = {
    "unspecified": ("未说明", "unspecified"),
    "key_compromise": ("密钥泄露", "key compromise"),
    "ca_compromise": ("CA 密钥泄露", "CA compromise"),
    "affiliation_changed": ("隶属关系变更", "affiliation changed"),
    "superseded": ("已被替代", "superseded"),
    "cessation_of_operation": ("停止使用", "cessation of operation"),
    "certificate_hold": ("证书冻结", "certificate hold"),
    "remove_from_crl": ("从 CRL 移除", "remove from CRL"),
    "privilege_withdrawn": ("权限撤销", "privilege withdrawn"),
    "aa_compromise": ("AA 密钥泄露", "AA compromise"),
}


class CertificateRevoked(CertError):
    code = "certificate_revoked"
    templates = {
        "zh-CN": "证书已于 {revoked_at:%Y-%m-%d} 被吊销（原因：{reason_zh}）。",
        "en": "The certificate was revoked on {revoked_at:%Y-%m-%d} (reason: {reason_en}).",
    }

    def __init__(
        self, detail: str = "", *, reason: str = "unspecified", revoked_at: datetime
    ) -> None:
        zh, en = REVOCATION_REASON_TEXT.get(reason, (reason, reason))
        super().__init__(detail, reason=reason, revoked_at=revoked_at, reason_zh=zh, reason_en=en)
        self.reason = reason
        self.revoked_at = revoked_at


class RevocationUnavailable(CertError):
    code = "revocation_unavailable"
    templates = {
        "zh-CN": "暂时无法确认证书是否已被吊销（CRL/OCSP 不可用），请稍后再试。",
        "en": "The certificate's revocation status cannot be confirmed right now "
        "(CRL/OCSP unavailable); please try again later.",
    }


class CertificateUsageInvalid(CertError):
    code = "certificate_usage_invalid"
    templates = {
        "zh-CN": "该证书不能用于登录（密钥用法或扩展密钥用法不符）。",
        "en": "This certificate cannot be used to sign in (key usage or extended key usage).",
    }


class SignatureInvalid(CertError):
    code = "signature_invalid"
    templates = {
        "zh-CN": "签名验证失败。",
        "en": "The signature does not verify.",
    }


class AccountNotFound(CertError):
    """No account matches the certificate's identity (mapping found nothing)."""

    code = "account_not_found"
    templates = {
        "zh-CN": "该证书尚未绑定任何账户，请先注册或绑定。",
        "en": "No account is bound to this certificate; register or bind it first.",
    }


class AccountAmbiguous(CertError):
    """More than one account matches: an error, never a guess."""

    code = "account_ambiguous"
    templates = {
        "zh-CN": "该证书对应多个账户，无法确定登录哪一个，请联系管理员。",
        "en": "This certificate matches more than one account; please contact the operator.",
    }
