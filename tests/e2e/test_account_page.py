"""The account page's actions in Chromium: signing out another session, unbinding a certificate,
and the page's security headers and CSRF rules."""

from __future__ import annotations

import re
from typing import Any

from cryptography.hazmat.primitives import hashes
from playwright.sync_api import expect

from gateway.accounts import get_accounts
from softhsm.pki import TestPki, random_id_card_number
from tests.e2e.conftest import PASSWORD, ConsoleWatch, Stack, screenshot, scripts_ready
from tests.fixtures_pki import PKI_EPOCH


def password_login(page: Any, identifier: str) -> None:
    page.goto("/login")
    scripts_ready(page, "login")
    page.get_by_role("tab", name="账号密码登录").click()
    page.get_by_label("登录名 / 统一社会信用代码 / 手机号 / 身份证号").fill(identifier)
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).last.click()
    expect(page).to_have_url(re.compile(r"/account$"))


def test_sign_out_another_session_and_unbind(
    page: Any, browser: Any, stack: Stack, test_pki: TestPki, console: ConsoleWatch
) -> None:
    accounts = get_accounts(stack.app)
    clock = stack.app.extensions["certgate.clock"]
    number = random_id_card_number()
    person = accounts.create_person(
        real_name="孙七",
        id_card_number=number,
        phone="13912345678",
        login_name="sunqi",
        password=PASSWORD,
        at=clock.now(),
    )
    certificate = test_pki.issue("person", "孙七", id_number=number, at=PKI_EPOCH).certificate
    thumbprint = certificate.fingerprint(hashes.SHA256()).hex()
    accounts.bind(person.id, "sha256", thumbprint, at=clock.now(), label="旧 USB Key")

    # Another browser signs in to the same account first.
    other = browser.new_context(base_url=stack.url)
    try:
        other_page = other.new_page()
        password_login(other_page, "13912345678")
        password_login(page, "sunqi")
        expect(page.locator("#account-facts")).to_contain_text("1391*****78")
        sessions = page.locator("#sessions li")
        expect(sessions).to_have_count(2)
        sessions.filter(has_not_text="当前会话").get_by_role("button", name="退出此会话").click()
        expect(page.get_by_role("status").first).to_have_text("已退出该会话。")
        expect(sessions).to_have_count(1)
        expect(sessions).to_contain_text("当前会话")
        assert other.request.get("/api/v1/session").status == 401

        certificates = page.locator("#certificates")
        expect(certificates).to_contain_text("旧 USB Key")
        expect(certificates).to_contain_text("从未使用")
        page.once("dialog", lambda dialog: dialog.accept())
        certificates.get_by_role("button", name="解除绑定").click()
        expect(page.get_by_role("status").first).to_have_text("已解除绑定。")
        expect(certificates).to_contain_text("没有显式绑定的证书")
        assert accounts.find(person.id).bindings == []
        expect(page.locator("#history")).to_contain_text("解除证书绑定")
        expect(page.locator("#history")).to_contain_text("退出会话")
        screenshot(page, "account-after-actions")
    finally:
        other.close()


def test_security_headers_and_csrf(page: Any, stack: Stack) -> None:
    response = page.goto("/login")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert f"connect-src 'self' {stack.agent_url}" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    password_login(page, "demo-enterprise")
    # Cookie-authenticated state changes need the session's CSRF token.
    refused = page.request.post("/api/v1/account/sessions/end", data={"id": "x"})
    assert refused.status == 400 and refused.json()["error"] == "bad_request"
    # And a page from another origin is refused outright.
    foreign = page.request.post(
        "/api/v1/account/consent",
        data={"version": "2026-01"},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status == 401 and foreign.json()["error"] == "origin_mismatch"
    # Without a session: the API answers 401, the page goes to the login page. (First let the
    # account page finish loading, so none of its own requests meets the cleared cookie.)
    expect(page.locator("#sessions")).to_contain_text("当前会话")
    expect(page.locator("#history")).to_contain_text("登录 · 密码")
    expect(page.locator("#certificates")).not_to_contain_text("加载中")
    page.goto("about:blank")
    page.context.clear_cookies()
    assert page.request.get("/api/v1/account/history").status == 401
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login$"))
