"""The pages single sign-on shows itself: the consent page and the error page (templates in
``web/templates``, texts in ``web/translations/sso``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response

from certs.errors import CertGateError
from gateway.sso.clients import RegisteredClient
from gateway.sso.errors import AuthorizationRequestInvalid
from gateway.web import content_security_policy, page_language, render_page


def message_of(error: CertGateError) -> str:
    return error.message(page_language())


def request_invalid_message(reason: str) -> str:
    return message_of(AuthorizationRequestInvalid(reason=reason[:200]))


def error_page(code: str, message: str, *, status: int) -> Response:
    response = render_page("sso_error.html", code=code, message=message)
    response.status_code = status
    return response


def consent_page(
    *,
    client: RegisteredClient,
    account_name: str,
    scopes: list[str],
    csrf_token: str,
    action: str,
    redirect_uri: str,
) -> Response:
    response = render_page(
        "sso_consent.html",
        client_name=client.name,
        account_name=account_name,
        scopes=scopes,
        csrf_token=csrf_token,
        action=action,
    )
    # The form posts here and the answer redirects to the client: browsers hold that redirect
    # to the page's form-action too, so the (registered, exactly matched) redirect URI's
    # origin is allowed beside 'self'.
    parts = urlsplit(redirect_uri)
    response.headers["Content-Security-Policy"] = content_security_policy().replace(
        "form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}"
    )
    return response
