"""Errors of single sign-on that the gateway shows itself (pages and operator commands).

What an OAuth 2.0 / OpenID Connect client is told follows those standards instead
(``error=invalid_grant`` and the rest, RFC 6749 §4.1.2.1 and §5.2): clients are written
against them. These codes are for the person in front of the browser when the gateway must
not send them back to the application (an unknown client, a redirect URI not registered).
"""

from __future__ import annotations

from certs.errors import CertGateError


class SsoError(CertGateError):
    """Root of the single sign-on errors; each answers 400 (gateway/errors.py ``http_status``)."""


class ClientUnknown(SsoError):
    code = "client_unknown"
    templates = {
        "zh-CN": "发起登录的应用未在本平台登记，无法继续。请联系该应用的管理员。",
        "en": "The application that sent you here is not registered with this platform; "
        "contact its administrator.",
    }


class RedirectUriInvalid(SsoError):
    code = "redirect_uri_invalid"
    templates = {
        "zh-CN": "应用提供的回调地址未登记，为保护您的账户，登录不会继续。请联系该应用的管理员。",
        "en": "The application's return address is not registered; to protect your account "
        "the sign-in does not continue. Contact the application's administrator.",
    }


class AuthorizationRequestInvalid(SsoError):
    code = "bad_request"
    templates = {
        "zh-CN": "应用发起的登录请求无效：{reason}",
        "en": "The application's sign-in request is not valid: {reason}",
    }


class ServiceInvalid(SsoError):
    """CAS: the ``service`` of a login request matches no registered service prefix."""

    code = "service_invalid"
    templates = {
        "zh-CN": "发起登录的应用地址未在本平台登记，登录不会继续。请联系该应用的管理员。",
        "en": "The address of the application that sent you here is not registered with this "
        "platform; the sign-in does not continue. Contact the application's administrator.",
    }


class ApplicationUnknown(CertGateError):
    """The account page named an application this account has not used (or no longer exists)."""

    code = "application_unknown"
    templates = {
        "zh-CN": "未找到该应用，或您尚未使用它登录。请刷新页面后重试。",
        "en": "This application is unknown or you have not signed in to it; reload the page.",
    }
