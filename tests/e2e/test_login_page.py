"""The login and account pages in Chromium, against a real gateway and signing agent."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    ENTERPRISE_NAME,
    PASSWORD,
    ConsoleWatch,
    Stack,
    screenshot,
    scripts_ready,
)
from tests.fixtures_softhsm import SoftHsmCredential

PHONE = {"width": 390, "height": 844}


def choose_certificate(page: Any, credential: SoftHsmCredential) -> None:
    value = f"{credential.token_label}/{credential.cert_id.hex()}"
    page.locator(f'input[name="certificate"][value="{value}"]').check()


def token_login(page: Any, credential: SoftHsmCredential, pin: str) -> None:
    page.goto("/login")
    scripts_ready(page, "login")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    choose_certificate(page, credential)
    page.get_by_label("USB Key 口令（PIN）").fill(pin)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).first.click()


def test_usb_key_login_shows_the_enterprise(page: Any, stack: Stack) -> None:
    tokens = stack.tokens
    page.goto("/login")
    scripts_ready(page, "login")
    option = page.locator(
        f'input[value="{tokens.enterprise.token_label}/{tokens.enterprise.cert_id.hex()}"]'
    )
    label = page.locator(f'label[for="{option.get_attribute("id")}"]')
    # The certificate list names holder, issuer and expiry.
    expect(label).to_contain_text(ENTERPRISE_NAME)
    expect(label).to_contain_text("颁发者")
    expect(label).to_contain_text("有效期至")
    expect(page.get_by_text("用户服务协议")).to_be_visible()
    screenshot(page, "login-certificates")

    token_login(page, tokens.enterprise, tokens.enterprise.pin)
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-name")).to_have_text(ENTERPRISE_NAME)
    facts = page.locator("#account-facts")
    expect(facts).to_contain_text("统一社会信用代码")
    expect(facts).to_contain_text(tokens.enterprise_uscc)
    # The demo PKI's anchor does not vouch for hardware keys (SoftHSM is software).
    expect(facts).to_contain_text("证书密钥 + PIN")
    expect(facts).to_contain_text("已同意版本 2026-01")
    expect(page.locator("#account-kind")).to_have_text("企业账户")
    # The bound certificate, now seen signing in, with its subject, issuer and last use.
    certificates = page.locator("#certificates")
    expect(certificates).to_contain_text(ENTERPRISE_NAME)
    expect(certificates).to_contain_text("CertGate Test")
    expect(certificates).to_contain_text("最近使用")
    expect(certificates.get_by_role("button", name="解除绑定")).to_be_visible()
    expect(page.locator("#sessions")).to_contain_text("当前会话")
    expect(page.locator("#history")).to_contain_text("登录 · USB Key")
    expect(page.locator("#key-watch")).to_have_text("USB Key 登录：拔出 USB Key 将自动退出。")
    screenshot(page, "account-enterprise")


@pytest.mark.parametrize("page", [PHONE], indirect=True)
def test_wrong_pin_shows_the_retry_message(page: Any, stack: Stack, console: ConsoleWatch) -> None:
    console.allow(401, "/v1/sign")
    enterprise = stack.tokens.enterprise
    token_login(page, enterprise, "000000")
    error = page.get_by_role("alert")
    pin = page.get_by_label("USB Key 口令（PIN）")
    expect(error).to_have_text("PIN 不正确，请核对后重试。")
    expect(pin).to_be_focused()
    expect(pin).to_have_value("")
    if stack.pin_counter:
        # One more wrong PIN: the key reports its final try, the page says how many are left.
        pin.fill("000001")
        page.get_by_role("button", name="登录", exact=True).first.click()
        expect(error).to_have_text("PIN 不正确，还可以再试 1 次；多次输错后 USB Key 将被锁定。")
    screenshot(page, "login-wrong-pin-phone")
    asked: list[str] = []
    if stack.pin_counter:
        # At the final try the agent wants the person's confirmation; the page asks for it.
        console.allow(409, "/v1/sign")
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    # The right PIN still works (and resets the key's counter).
    pin.fill(enterprise.pin)
    page.get_by_role("button", name="登录", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"/account$"))
    if stack.pin_counter:
        assert len(asked) == 1 and "最后一次" in asked[0]


def test_revoked_certificate_shows_the_revoked_message(
    page: Any, stack: Stack, console: ConsoleWatch
) -> None:
    console.allow(401, "/api/v1/login/token")
    token_login(page, stack.tokens.revoked, stack.tokens.revoked.pin)
    expect(page.get_by_role("alert")).to_have_text(
        "证书已被吊销，不能再用于登录。请联系证书颁发机构（CA）重新办理证书。"
    )
    screenshot(page, "login-revoked")


def test_certificate_without_an_account(page: Any, stack: Stack, console: ConsoleWatch) -> None:
    console.allow(401, "/api/v1/login/token")
    token_login(page, stack.tokens.unbound, stack.tokens.unbound.pin)
    expect(page.get_by_role("alert")).to_have_text(
        "该证书尚未绑定本平台的账户。请确认使用的是本单位或本人的证书，或联系管理员为您的账户绑定"
        "该证书；也可以先用账号密码登录。"
    )


def test_password_login(page: Any, stack: Stack, console: ConsoleWatch) -> None:
    console.allow(401, "/api/v1/login/password")
    page.goto("/login")
    scripts_ready(page, "login")
    page.get_by_role("tab", name="账号密码登录").click()
    page.get_by_label("登录名 / 统一社会信用代码 / 手机号 / 身份证号").fill(
        stack.tokens.enterprise_uscc
    )
    page.get_by_label("密码", exact=True).fill("not the password")
    page.get_by_role("button", name="登录", exact=True).last.click()
    # No consent yet: nothing is sent.
    expect(page.get_by_role("alert")).to_have_text("请先阅读并勾选同意《用户服务协议》。")
    expect(page.get_by_label("我已阅读并同意")).to_be_focused()
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).last.click()
    expect(page.get_by_role("alert")).to_have_text("账号或密码不正确，请重新输入。")
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="登录", exact=True).last.click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-name")).to_have_text(ENTERPRISE_NAME)
    expect(page.locator("#account-facts")).to_contain_text("密码")
    expect(page.locator("#key-watch")).to_be_hidden()
    expect(page.locator("#history")).to_contain_text("登录 · 密码")
    screenshot(page, "account-password")


def test_removing_the_key_logs_out(page: Any, stack: Stack, console: ConsoleWatch) -> None:
    removable = stack.tokens.removable
    token_login(page, removable, removable.pin)
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-name")).to_have_text("李四")
    expect(page.locator("#account-kind")).to_have_text("个人账户")
    expect(page.locator("#key-watch")).to_be_visible()
    removable.kit.delete_token(removable.token_label)
    expect(page).to_have_url(re.compile(r"/login\?reason=key_removed$"))
    expect(page.get_by_role("status").first).to_have_text("USB Key 已拔出，您已安全退出。")
    # The session ended on the server, not just in the page.
    console.allow(401, "/api/v1/session")
    response = page.request.get("/api/v1/session")
    assert response.status == 401 and response.json()["error"] == "credentials_invalid"
    screenshot(page, "login-after-key-removed")


def test_english_switch(page: Any, stack: Stack) -> None:
    page.goto("/login")
    scripts_ready(page, "login")
    expect(page.get_by_role("heading", level=1)).to_have_text("登录")
    page.get_by_role("link", name="Switch to English").click()
    scripts_ready(page, "login")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.get_by_role("tab", name="USB key / certificate")).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.get_by_label("USB key PIN")).to_be_visible()
    expect(page.get_by_text("User Service Agreement")).to_be_visible()
    # Keyboard: the arrow keys move along USB key, QR code, password, SMS code.
    page.get_by_role("tab", name="USB key / certificate").press("ArrowRight")
    expect(page.get_by_role("tab", name="Scan QR code")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Password")).to_be_focused()
    page.get_by_label("Login name / social credit code / phone / ID-card number").fill(
        "demo-enterprise"
    )
    page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
    page.get_by_label("I have read and agree to the").check()
    page.get_by_role("button", name="Sign in", exact=True).last.click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-kind")).to_have_text("Enterprise account")
    expect(page.locator("#account-facts")).to_contain_text("Unified social credit code")
    expect(page.locator("#sessions")).to_contain_text("this session")
    expect(page.locator("#history")).to_contain_text("sign-in · password")
    screenshot(page, "account-english")
    # And back: the choice is remembered until switched again.
    page.get_by_role("link", name="切换到中文").click()
    expect(page.locator("#account-kind")).to_have_text("企业账户")
