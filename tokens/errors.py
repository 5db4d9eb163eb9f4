"""Typed errors of the token side, one class per stable DESIGN.md error code.

``TokenError`` extends ``certs.errors.CertGateError``, so the agent (and the gateway, should it ever
see one) turns any of them into the DESIGN.md JSON answer with one handler. Third-party exceptions
(python-pkcs11, pyscard) are converted at this package's boundary by ``from_pkcs11_error``; callers
never see a ``pkcs11.exceptions`` class.

``detail`` is for the operator's log. It may name the PKCS#11 return code or the token label, never
a PIN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pkcs11 import exceptions as p11

from certs.errors import DEFAULT_LANGUAGE, CertGateError


class TokenError(CertGateError):
    """Root of the token package's errors."""

    code = "unavailable"
    templates = {
        "zh-CN": "USB Key 暂时无法使用，请重新插入后再试。",
        "en": "The USB key cannot be used right now; re-insert it and try again.",
    }


class TokenBadRequest(TokenError):
    """A malformed request to the agent (missing field, bad hex, oversized body...)."""

    code = "bad_request"
    templates = {
        "zh-CN": "请求无效：{reason}",
        "en": "The request is not valid: {reason}",
    }

    def __init__(self, detail: str = "", *, reason: str = "") -> None:
        super().__init__(detail, reason=reason or detail)
        self.reason = reason or detail


class OriginNotAllowed(TokenError):
    code = "origin_not_allowed"
    templates = {
        "zh-CN": "此网站未被允许使用本机签名服务。",
        "en": "This site is not allowed to use the local signing agent.",
    }


class PinIncorrect(TokenError):
    """Wrong PIN. ``retries_left`` is known only when the token tells (final-try flag)."""

    code = "pin_incorrect"
    templates = {
        "zh-CN": "PIN 码错误。",
        "en": "The PIN is incorrect.",
    }
    retries_templates: ClassVar[Mapping[str, str]] = {
        "zh-CN": "PIN 码错误，还可以尝试 {retries_left} 次。",
        "en": "The PIN is incorrect; {retries_left} attempt(s) left.",
    }
    count_low_templates: ClassVar[Mapping[str, str]] = {
        "zh-CN": "PIN 码错误，剩余尝试次数不多，多次错误后 USB Key 将被锁定。",
        "en": "The PIN is incorrect; few attempts are left before the USB key locks.",
    }

    def __init__(
        self, detail: str = "", *, retries_left: int | None = None, count_low: bool = False
    ) -> None:
        super().__init__(detail, retries_left=retries_left, count_low=count_low)
        self.retries_left = retries_left
        self.count_low = count_low

    def message(self, language: str = DEFAULT_LANGUAGE) -> str:
        if self.retries_left is not None:
            table = self.retries_templates
        elif self.count_low:
            table = self.count_low_templates
        else:
            table = self.templates
        template = table.get(language) or table[DEFAULT_LANGUAGE]
        return template.format(**self.fields())


class PinLocked(TokenError):
    code = "pin_locked"
    templates = {
        "zh-CN": "USB Key 的 PIN 码已被锁定，请联系证书颁发机构解锁。",
        "en": "The USB key's PIN is locked; ask the certificate issuer to unlock it.",
    }


class PinRateLimited(TokenError):
    """Too many wrong PINs for this token just now; nothing was sent to it."""

    code = "pin_rate_limited"
    templates = {
        "zh-CN": "PIN 码尝试过于频繁，为保护 USB Key 不被锁定，请 {retry_after} 秒后再试。",
        "en": "Too many PIN attempts; to keep the USB key from locking, try again in "
        "{retry_after} s.",
    }

    def __init__(self, detail: str = "", *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class PinFinalTry(TokenError):
    """The token is at its final PIN try and the request did not carry the person's
    confirmation (``confirm_final_try``); nothing was sent to it."""

    code = "pin_final_try"
    templates = {
        "zh-CN": "USB Key 只剩最后一次 PIN 尝试机会，再输错将被锁定。请核对 PIN 无误后再确认提交。",
        "en": "The USB key has one PIN try left; another wrong PIN locks it. Check the PIN, "
        "then confirm to try it.",
    }


class TokenNotPresent(TokenError):
    code = "token_not_present"
    templates = {
        "zh-CN": "未检测到 USB Key，请插入后再试。",
        "en": "No USB key found; insert it and try again.",
    }


class CertificateNotFound(TokenError):
    code = "certificate_not_found"
    templates = {
        "zh-CN": "USB Key 中找不到所选证书或其私钥。",
        "en": "The selected certificate or its private key is not on the USB key.",
    }


class ModuleUnavailable(TokenError):
    """No PKCS#11 module could be loaded (none installed, or the file is not a module)."""

    code = "unavailable"
    templates = {
        "zh-CN": "找不到可用的 USB Key 驱动（PKCS#11 模块）。",
        "en": "No usable USB key driver (PKCS#11 module) was found.",
    }


class TokenFailure(TokenError):
    """Any other PKCS#11 failure: code ``unavailable``, the return code goes to ``detail``."""

    code = "unavailable"


# PKCS#11 exception -> CertGate error class. Order does not matter: the lookup walks the
# exception's MRO, so a subclass listed here wins over its base.
PKCS11_ERRORS: Mapping[type[BaseException], type[TokenError]] = {
    p11.PinIncorrect: PinIncorrect,
    # A PIN of the wrong length or with bad characters is, to the person typing it, a wrong PIN.
    p11.PinLenRange: PinIncorrect,
    p11.PinInvalid: PinIncorrect,
    p11.PinLocked: PinLocked,
    p11.PinExpired: PinLocked,
    p11.TokenNotPresent: TokenNotPresent,
    p11.TokenNotRecognised: TokenNotPresent,
    p11.DeviceRemoved: TokenNotPresent,
    p11.SlotIDInvalid: TokenNotPresent,
    p11.NoSuchToken: TokenNotPresent,
    p11.SessionClosed: TokenNotPresent,
    p11.SessionHandleInvalid: TokenNotPresent,
    p11.NoSuchKey: CertificateNotFound,
    p11.KeyHandleInvalid: CertificateNotFound,
    p11.ObjectHandleInvalid: CertificateNotFound,
    p11.MultipleTokensReturned: TokenBadRequest,
}


def from_pkcs11_error(error: BaseException) -> TokenError:
    """The CertGate error for a python-pkcs11 exception (``TokenFailure`` when none fits)."""
    if isinstance(error, TokenError):
        return error
    detail = f"{type(error).__name__}" + (f": {error}" if str(error) else "")
    for klass in type(error).__mro__:
        target = PKCS11_ERRORS.get(klass)
        if target is not None:
            return target(detail)
    return TokenFailure(detail)
