"""The consent page in a browser's terms: its form posts to the gateway, whose answer
redirects to the application, and browsers (Chromium) apply the page's CSP ``form-action`` to
that redirect too. The policy must name the application's redirect URI's origin, or the
person's "allow" ends on the consent page (the real-browser flow is in
tests/e2e/test_sso_apps.py)."""

from __future__ import annotations

from tests.sso.conftest import Gateway


def _form_action(csp: str) -> list[str]:
    for directive in csp.split(";"):
        name, *sources = directive.split()
        if name == "form-action":
            return sources
    return []


def test_the_consent_pages_form_may_lead_to_the_redirect_uri(gateway: Gateway) -> None:
    made = gateway.client()
    browser = gateway.browser()
    browser.password_login()
    page = browser.get(
        "/oauth/authorize",
        response_type="code",
        client_id=made.client.client_id,
        redirect_uri="https://app.example.cn/callback",
        scope="openid",
        state="s",
    )
    assert page.status_code == 200 and 'id="consent-allow"' in page.text
    sources = _form_action(page.headers["Content-Security-Policy"])
    assert sources == ["'self'", "https://app.example.cn"]


def test_other_pages_keep_form_action_self(gateway: Gateway) -> None:
    page = gateway.browser().get("/login")
    assert _form_action(page.headers["Content-Security-Policy"]) == ["'self'"]
