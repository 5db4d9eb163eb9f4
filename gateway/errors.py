"""The gateway's own errors and the one table that turns any ``CertGateError`` into HTTP.

Certificate and account-mapping errors come from ``certs.errors``; the token package adds its own.
Here live the errors only the gateway raises (challenges, credentials, account state, limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from certs.errors import BadRequest, CertGateError

__all__ = [
    "AccountDisabled",
    "AccountLocked",
    "BadRequest",
    "ChallengeExpired",
    "ChallengeUnknown",
    "ChallengeUsed",
    "CredentialsInvalid",
    "HTTP_STATUS",
    "NotSignedIn",
    "OriginMismatch",
    "RateLimited",
    "Unavailable",
    "http_status",
]


class ChallengeUnknown(CertGateError):
    code = "challenge_unknown"
    templates = {
        "zh-CN": "登录挑战不存在或不属于当前会话，请刷新页面后重试。",
        "en": "The login challenge is unknown or belongs to another session; reload and retry.",
    }


class ChallengeExpired(CertGateError):
    code = "challenge_expired"
    templates = {
        "zh-CN": "登录挑战已过期，请重新登录。",
        "en": "The login challenge has expired; please sign in again.",
    }


class ChallengeUsed(CertGateError):
    code = "challenge_used"
    templates = {
        "zh-CN": "登录挑战已被使用，请重新登录。",
        "en": "The login challenge has already been used; please sign in again.",
    }


class OriginMismatch(CertGateError):
    code = "origin_mismatch"
    templates = {
        "zh-CN": "请求来源与本站地址不符。",
        "en": "The request does not come from this site's origin.",
    }


class CredentialsInvalid(CertGateError):
    code = "credentials_invalid"
    templates = {
        "zh-CN": "账号或密码错误。",
        "en": "The account or password is incorrect.",
    }


class NotSignedIn(CredentialsInvalid):
    """No live session: the stable code is ``credentials_invalid`` with its own message."""

    templates = {
        "zh-CN": "尚未登录或会话已过期，请重新登录。",
        "en": "You are not signed in or your session has expired; please sign in again.",
    }


class AccountDisabled(CertGateError):
    code = "account_disabled"
    templates = {
        "zh-CN": "该账户已被冻结、暂停或注销，无法登录。如有疑问请联系平台。",
        "en": "This account is frozen, suspended or closed and cannot sign in; "
        "contact the platform.",
    }


# The login methods a lock can stop, as the message names them: (zh-CN, en).
LOCKED_METHOD_TEXT: Mapping[str, tuple[str, str]] = {
    "password": ("密码", "password"),
    "sms": ("短信验证码", "SMS code"),
}


# How a lock's end is labelled in a message, by display time zone: (zh-CN, en); any other zone
# by its IANA name.
ZONE_LABELS: Mapping[str, tuple[str, str]] = {
    "Asia/Shanghai": ("北京时间", "China Standard Time"),
    "UTC": ("UTC", "UTC"),
}


class AccountLocked(CertGateError):
    """One login method locked after repeated failures; the others still work. The answer's
    JSON carries ``method`` and ``locked_until`` (ISO 8601, UTC) beside the message, which
    shows the time in the gateway's display time zone (``display_time_zone``, Asia/Shanghai
    by default) as the pages do."""

    code = "account_locked"
    templates = {
        "zh-CN": "{method_zh}登录失败次数过多，{method_zh}登录已锁定至 "
        "{shown_until:%Y-%m-%d %H:%M}（{zone_zh}）。其他登录方式（如 USB Key）不受影响。",
        "en": "Too many failed {method_en} sign-ins; {method_en} sign-in is locked until "
        "{shown_until:%Y-%m-%d %H:%M} ({zone_en}). Other methods (such as the USB key) still work.",
    }

    def __init__(
        self, detail: str = "", *, method: str, locked_until: datetime, shown_zone: str = "UTC"
    ) -> None:
        zh, en = LOCKED_METHOD_TEXT.get(method, (method, method))
        zone_zh, zone_en = ZONE_LABELS.get(shown_zone, (shown_zone, shown_zone))
        super().__init__(
            detail,
            method=method,
            locked_until=locked_until,
            shown_until=locked_until.astimezone(ZoneInfo(shown_zone)),
            zone_zh=zone_zh,
            zone_en=zone_en,
            method_zh=zh,
            method_en=en,
        )
        self.method = method
        self.locked_until = locked_until

    def json_fields(self) -> dict[str, str]:
        return {
            "method": self.method,
            "locked_until": self.locked_until.isoformat().replace("+00:00", "Z"),
        }


class RateLimited(CertGateError):
    code = "rate_limited"
    templates = {
        "zh-CN": "尝试过于频繁，请 {retry_after} 秒后再试。",
        "en": "Too many attempts; please try again in {retry_after} seconds.",
    }

    def __init__(self, detail: str = "", *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class Unavailable(CertGateError):
    code = "unavailable"
    templates = {
        "zh-CN": "服务暂时不可用，请稍后再试。",
        "en": "The service is temporarily unavailable; please try again later.",
    }


# DESIGN.md "Errors": HTTP status per stable code.
HTTP_STATUS: Mapping[str, int] = {
    "bad_request": 400,
    "challenge_unknown": 401,
    "challenge_expired": 401,
    "challenge_used": 401,
    "origin_mismatch": 401,
    "signature_invalid": 401,
    "certificate_untrusted": 401,
    "certificate_expired": 401,
    "certificate_not_yet_valid": 401,
    "certificate_revoked": 401,
    "revocation_unavailable": 401,
    "certificate_usage_invalid": 401,
    "account_not_found": 401,
    "credentials_invalid": 401,
    "account_disabled": 403,
    "account_locked": 403,
    "account_ambiguous": 409,
    "rate_limited": 429,
    "unavailable": 503,
}
# Codes the capabilities added later (docs/gateway.md lists them beside the ones above): the
# account's life (gateway/lifecycle/errors.py).
CAPABILITY_STATUS: Mapping[str, int] = {
    "code_invalid": 401,
    "code_expired": 401,
    # 422: the body is well formed (400 bad_request is kept for that) but a value is refused.
    "password_weak": 422,
    "identifier_invalid": 422,
    "identifier_taken": 409,
    "agreement_outdated": 409,
    "consent_required": 403,
    # Single sign-on (gateway/sso/errors.py): the account page names an application not used.
    "application_unknown": 404,
    "reauthentication_required": 403,
    "certificate_bound_elsewhere": 409,
    # QR-code login (gateway/qr/errors.py).
    "qr_ticket_unknown": 404,
    "qr_ticket_expired": 410,
    "qr_ticket_used": 409,
    # Enterprise roles (gateway/roles/errors.py).
    "role_required": 403,
    "enterprise_required": 403,
    "invitation_unknown": 404,
    "invitation_closed": 409,
    "role_unknown": 404,
    "period_invalid": 422,
    # Operator console (gateway/admin/errors.py).
    "forbidden": 403,
    "review_closed": 409,
}


def http_status(code: str) -> int:
    """The HTTP status of a stable error code (an unknown code is a client error)."""
    return HTTP_STATUS.get(code) or CAPABILITY_STATUS.get(code, 400)
