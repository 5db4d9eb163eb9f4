"""The errors of verification codes, registration, passwords and agreements.

Each maps to one stable code (HTTP status in ``gateway.errors.HTTP_STATUS``); the ones that say
more than their message carry it as JSON fields (``reason``, ``field``, ``version``).
"""

from __future__ import annotations

from collections.abc import Mapping

from certs.errors import CertGateError


class CodeInvalid(CertGateError):
    """A wrong code, or none was sent to this destination for this purpose."""

    code = "code_invalid"
    templates = {
        "zh-CN": "验证码错误，请检查后重新输入。",
        "en": "The verification code is not correct; check it and type it again.",
    }


class CodeExpired(CertGateError):
    """The code is past its 5 minutes, already used, or void after 5 wrong tries."""

    code = "code_expired"
    templates = {
        "zh-CN": "验证码已失效（超过 5 分钟、已使用或输错次数过多），请重新获取验证码。",
        "en": "The verification code is no longer valid (older than 5 minutes, already used "
        "or mistyped too often); please ask for a new code.",
    }


# Why a new password is refused: reason -> (zh-CN, en).
PASSWORD_REASONS: Mapping[str, tuple[str, str]] = {
    "too_short": (
        "密码至少需要 {minimum} 个字符。",
        "A password needs at least {minimum} characters.",
    ),
    "too_long": (
        "密码不能超过 {maximum} 个字符。",
        "A password may have at most {maximum} characters.",
    ),
    "common": (
        "该密码过于常见，容易被猜中，请换一个。",
        "This password is among the most common ones and easy to guess; choose another.",
    ),
    "personal": (
        "密码不能包含您的手机号、证件号码、统一社会信用代码或登录名。",
        "A password must not contain your phone number, ID or credit code number, or login name.",
    ),
}


class PasswordWeak(CertGateError):
    code = "password_weak"
    templates = {"zh-CN": "{message_zh}", "en": "{message_en}"}

    def __init__(self, reason: str, *, minimum: int = 0, maximum: int = 0) -> None:
        zh, en = PASSWORD_REASONS[reason]
        super().__init__(
            f"password refused: {reason}",
            message_zh=zh.format(minimum=minimum, maximum=maximum),
            message_en=en.format(minimum=minimum, maximum=maximum),
        )
        self.reason = reason

    def json_fields(self) -> dict[str, str]:
        return {"reason": self.reason}


# Field -> (zh-CN, en) names, for the messages of identifier_invalid and identifier_taken.
FIELD_NAMES: Mapping[str, tuple[str, str]] = {
    "id_card_number": ("身份证号码", "ID-card number"),
    "legal_representative_id_number": (
        "法定代表人身份证号码",
        "legal representative's ID-card number",
    ),
    "uscc": ("统一社会信用代码", "unified social credit code"),
    "phone": ("手机号码", "phone number"),
    "email": ("电子邮箱", "e-mail address"),
    "login_name": ("登录名", "login name"),
    "real_name": ("姓名", "name"),
    "name": ("企业名称", "enterprise name"),
    "legal_representative_name": ("法定代表人姓名", "legal representative's name"),
}


class _FieldError(CertGateError):
    def __init__(self, field: str, detail: str = "") -> None:
        zh, en = FIELD_NAMES.get(field, (field, field))
        super().__init__(detail or field, field_zh=zh, field_en=en)
        self.field = field

    def json_fields(self) -> dict[str, str]:
        return {"field": self.field}


class IdentifierInvalid(_FieldError):
    code = "identifier_invalid"
    templates = {
        "zh-CN": "{field_zh}格式不正确或校验位不符，请核对。",
        "en": "The {field_en} is not well formed or its check character is wrong; check it.",
    }


class IdentifierTaken(_FieldError):
    code = "identifier_taken"
    templates = {
        "zh-CN": "该{field_zh}已被其他账户使用。如是您本人的账户，请直接登录或找回密码。",
        "en": "This {field_en} is already used by an account. If it is yours, sign in or "
        "reset its password.",
    }


class AgreementOutdated(CertGateError):
    """The version agreed to is not the current one (the page was open across a publish)."""

    code = "agreement_outdated"
    templates = {
        "zh-CN": "服务协议已更新为 {version} 版，请阅读并同意新版本后重试。",
        "en": "The service agreement is now version {version}; read and accept it, then retry.",
    }

    def __init__(self, detail: str = "", *, version: str, summary: str | None) -> None:
        super().__init__(detail, version=version)
        self.version = version
        self.summary = summary

    def json_fields(self) -> dict[str, object]:
        return {"version": self.version, "summary": self.summary}


class ConsentRequired(AgreementOutdated):
    """A session whose account has not accepted the current agreement tried something else."""

    code = "consent_required"
    templates = {
        "zh-CN": "服务协议已更新为 {version} 版。请先阅读并同意新版本协议（或注销账户），"
        "才能继续使用。",
        "en": "The service agreement is now version {version}. Read and accept it (or cancel "
        "the account) before doing anything else.",
    }


class ReauthenticationRequired(CertGateError):
    """Cancellation needs a login (any factor) in the last few minutes; this session is older."""

    code = "reauthentication_required"
    templates = {
        "zh-CN": "为确认是您本人操作，请重新登录（{minutes} 分钟内登录过）后再注销账户。",
        "en": "To make sure it is you, sign in again (within the last {minutes} minutes) "
        "before cancelling the account.",
    }

    def __init__(self, detail: str = "", *, minutes: int) -> None:
        super().__init__(detail, minutes=minutes)
        self.minutes = minutes

    def json_fields(self) -> dict[str, int]:
        return {"within_minutes": self.minutes}


class CertificateBoundElsewhere(CertGateError):
    """The certificate presented for binding is bound to, or identifies, another account."""

    code = "certificate_bound_elsewhere"
    templates = {
        "zh-CN": "该证书已绑定或属于其他账户，不能绑定到当前账户。如有疑问请联系客服。",
        "en": "This certificate is bound to, or belongs to, another account and cannot be "
        "bound to this one. Contact support if this is unexpected.",
    }
