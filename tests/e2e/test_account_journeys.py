"""The account's life as people go through it, in Chromium: registering (the SMS code read from
the gateway's development outbox), SMS login, a forgotten password, binding a second USB key
and unbinding it (that certificate then cannot sign in), accepting a new agreement version
after `certgate agreement publish`; each flow once in zh-CN at desktop width, and a screenshot
tour of every screen in English and at phone width, checked for overflow and words broken
across lines."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect

from gateway.accounts import get_accounts
from softhsm.pki import TestPki, random_id_card_number
from tests.e2e.conftest import (
    PASSWORD,
    ConsoleWatch,
    E2eTokens,
    Stack,
    _gateway_app,
    outbox_messages,
    screenshot,
    scripts_ready,
)
from tests.fixtures_softhsm import MakeSoftHsmToken, SoftHsmCredential
from tests.gateway.conftest import DATA_KEY, close_app
from tests.gateway.serving import serving

NEW_PASSWORD = "harbour-lantern-2031"
PHONE_WIDTH = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}

# Evaluated in the page: overflow, and short labels broken inside a word.
LAYOUT_PROBLEMS = "\n".join(
    line
    for line in (Path(__file__).parent / "layout_problems.js").read_text("utf-8").splitlines()
    if not line.startswith("//")
)


def check_layout(page: Any, name: str) -> None:
    """Screenshot ``name`` and fail on overflow or a broken word."""
    screenshot(page, name)
    assert page.evaluate(LAYOUT_PROBLEMS) == [], name


def random_phone() -> str:
    return "139" + "".join(random.choices("0123456789", k=8))


def full_width(value: str) -> str:
    """As a Chinese IME types it: full-width digits, groups of four with ideographic spaces."""
    wide = value.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))
    return "\u3000".join(wide[i : i + 4] for i in range(0, len(wide), 4))


def code_for(app: Flask, phone: str, purpose: str) -> str:
    """The newest code the outbox holds for ``phone`` and ``purpose``, as read on the phone."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in reversed(outbox_messages(app)):
            if message["to"] == phone and message["purpose"] == purpose and message.get("code"):
                return str(message["code"])
        time.sleep(0.1)
    raise AssertionError(f"no {purpose} code arrived in the outbox")


def next_code_interval(app: Flask) -> None:
    """The e2e clock stands still; one code per phone per minute, so let a minute pass."""
    app.extensions["certgate.clock"].advance(61)


def ask_for_code(page: Any, app: Flask, phone: str, purpose: str) -> str:
    before = len(outbox_messages(app))
    page.get_by_role("button", name="获取验证码").click()
    expect(page.get_by_role("status").filter(has_text="验证码已发送")).to_have_text(
        "验证码已发送，请查看手机短信。"
    )
    assert len(outbox_messages(app)) > before
    return code_for(app, phone, purpose)


def sign_out(page: Any) -> None:
    page.get_by_role("button", name="退出登录").click()
    expect(page).to_have_url(re.compile(r"/login\?reason=signed_out$"))
    scripts_ready(page, "login")


def test_register_sms_login_and_forgotten_password(page: Any, stack: Stack) -> None:
    phone, number = random_phone(), random_id_card_number()
    page.goto("/login?lang=zh-CN")
    scripts_ready(page, "login")
    page.get_by_role("link", name="没有账户？立即注册").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("注册账户")
    page.get_by_label("真实姓名").fill("吴十")
    # Typed with a Chinese IME: full-width digits and ideographic spaces are accepted.
    page.get_by_label("身份证号码", exact=True).fill(full_width(number))
    expect(page.get_by_label("身份证号码", exact=True)).to_have_value(number)
    page.get_by_label("手机号码", exact=True).fill(phone)
    next_code_interval(stack.app)
    code = ask_for_code(page, stack.app, phone, "register")
    page.get_by_label("短信验证码", exact=True).fill(code)
    page.get_by_label("新密码", exact=True).fill(PASSWORD)
    page.get_by_label("我已阅读并同意").check()
    check_layout(page, "register-person-zh-CN-desktop")
    page.get_by_role("button", name="注册", exact=True).click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-name")).to_have_text("吴十")
    expect(page.locator("#account-facts")).to_contain_text(number[:4] + "*")
    account = get_accounts(stack.app).find(phone)
    assert account.real_name_level >= 1

    # SMS login: the code the outbox shows signs in.
    sign_out(page)
    page.get_by_role("tab", name="短信验证码登录").click()
    page.get_by_label("手机号码", exact=True).fill(phone)
    next_code_interval(stack.app)
    code = ask_for_code(page, stack.app, phone, "login")
    page.get_by_label("短信验证码", exact=True).fill(code)
    page.get_by_label("我已阅读并同意").check()
    check_layout(page, "login-sms-zh-CN-desktop")
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-facts")).to_contain_text("短信验证码")

    # A forgotten password: reset by SMS code, then the new one signs in and the old one not.
    sign_out(page)
    page.get_by_role("link", name="忘记密码？").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("找回密码")
    page.get_by_label("手机号码", exact=True).fill(phone)
    next_code_interval(stack.app)
    code = ask_for_code(page, stack.app, phone, "reset")
    page.get_by_label("短信验证码", exact=True).fill(code)
    page.get_by_label("新密码", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="重置密码").click()
    expect(page.locator("#page-status")).to_have_text("密码已重置，请用新密码登录。")
    check_layout(page, "reset-done-zh-CN-desktop")
    page.goto("/login")
    scripts_ready(page, "login")
    page.get_by_role("tab", name="账号密码登录").click()
    page.get_by_label("登录名 / 统一社会信用代码 / 手机号 / 身份证号").fill(full_width(phone))
    page.get_by_label("密码", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-name")).to_have_text("吴十")


@dataclass(frozen=True)
class TwoKeys:
    """Two USB keys of one person (an old and a new certificate with the same ID number)."""

    number: str
    first: SoftHsmCredential
    second: SoftHsmCredential


@pytest.fixture(scope="module")
def two_keys(make_softhsm_token: MakeSoftHsmToken, stack: Stack) -> TwoKeys:
    number = random_id_card_number()
    first = make_softhsm_token(kind="person", name="孙九", id_number=number)
    second = make_softhsm_token(kind="person", name="孙九", id_number=number, key="p256", ca="p256")
    return TwoKeys(number, first, second)


def token_login(page: Any, credential: SoftHsmCredential) -> None:
    page.goto("/login?lang=zh-CN")
    scripts_ready(page, "login")
    option = page.locator(
        f'input[name="certificate"][value="{credential.token_label}/{credential.cert_id.hex()}"]'
    )
    option.check()
    page.get_by_label("USB Key 口令（PIN）").fill(credential.pin)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).click()


def test_bind_a_second_key_then_unbind_it(
    page: Any, stack: Stack, two_keys: TwoKeys, console: ConsoleWatch
) -> None:
    get_accounts(stack.app).create_person(
        real_name="孙九",
        id_card_number=two_keys.number,
        at=stack.app.extensions["certgate.clock"].now(),
    )
    # The first key finds the account by the ID-card number it carries.
    token_login(page, two_keys.first)
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-name")).to_have_text("孙九")
    expect(page.locator('html[data-account-life="ready"]')).to_have_count(1)
    certificates = page.locator("#certificates li")
    for credential, count in ((two_keys.first, 1), (two_keys.second, 2)):
        page.get_by_role("button", name="绑定此 USB Key").click()
        choice = page.locator(
            f'#bind-certificates input[data-token-label="{credential.token_label}"]'
        )
        expect(choice).to_be_visible()
        # Every option says whose certificate it is, with the number masked.
        label = page.locator(f'label[for="{choice.get_attribute("id")}"]')
        expect(label).to_contain_text("个人证书")
        expect(label).to_contain_text(two_keys.number[:4] + "************" + two_keys.number[-2:])
        choice.check()
        page.get_by_label("PIN 码", exact=True).fill(credential.pin)
        page.get_by_role("button", name="确认绑定").click()
        expect(certificates).to_have_count(count)
    # The subject as fields, the ID-card number masked.
    subject = certificates.first.locator(".subject-fields")
    expect(subject.locator("dt").first).to_have_text("名称（CN）")
    expect(subject).to_contain_text("孙九")
    expect(subject).not_to_contain_text(two_keys.number)
    check_layout(page, "account-two-keys-zh-CN-desktop")

    # Unbind the second key: that certificate then cannot sign in, though it names the person.
    # The second key's certificate comes from the P-256 CA, the first one's from the RSA CA.
    target = certificates.filter(has_text="CertGate Test P-256 CA")
    expect(target).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    target.get_by_role("button", name="解除绑定").click()
    expect(page.locator("#account-status")).to_have_text("已解除绑定。")
    expect(certificates).to_have_count(1)
    sign_out(page)

    console.allow(401, "/api/v1/login/token")
    token_login(page, two_keys.second)
    expect(page.get_by_role("alert")).to_contain_text("该证书尚未绑定本平台的账户")
    check_layout(page, "login-unbound-certificate-zh-CN-desktop")
    token_login(page, two_keys.first)
    expect(page).to_have_url(re.compile(r"/account$"))


# --- a second gateway, for a new agreement version (the shared one keeps 2026-01) ------------


@dataclass(frozen=True)
class ConsentGateway:
    url: str
    app: Flask
    directory: Path


@pytest.fixture(scope="module")
def consent_gateway(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki, e2e_tokens: E2eTokens
) -> Iterator[ConsentGateway]:
    """A gateway of its own (its own database and outbox), with no certificate helper running:
    publishing an agreement there leaves the other tests' gateway alone."""
    app: Flask | None = None
    try:
        with serving(threads=4) as served:
            app, _ = _gateway_app(tmp_path_factory, test_pki, e2e_tokens, served.url)
            served.app = app
            served.start()
            yield ConsentGateway(served.url, app, tmp_path_factory.mktemp("agreement"))
    finally:
        if app is not None:
            close_app(app)


def publish_agreement(gateway: ConsentGateway, version: str, summary: str) -> None:
    """`certgate agreement publish`, as the operator runs it against the gateway's database."""
    text = gateway.directory / f"agreement-{version}.txt"
    text.write_text("用户服务协议\n新增：个人信息的保存期限。\n", encoding="utf-8")
    certgate = Path(sys.executable).with_name("certgate")
    result = subprocess.run(
        [str(certgate), "agreement", "publish", version, "--file", str(text)]
        + ["--summary", summary],
        cwd=gateway.directory,
        env={
            **os.environ,
            "CERTGATE_DATABASE_URL": gateway.app.config["DATABASE_URL"],
            "CERTGATE_DATA_KEY": DATA_KEY,
            "CERTGATE_PUBLIC_ORIGIN": gateway.url,
            "CERTGATE_NOTIFY_SMS": gateway.app.config["NOTIFY_SMS"],
            "CERTGATE_NOTIFY_EMAIL": gateway.app.config["NOTIFY_EMAIL"],
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def password_login(page: Any, login_name: str, password: str = PASSWORD) -> None:
    page.get_by_role("tab", name=re.compile("账号密码|Password")).click()
    page.locator("#identifier").fill(login_name)
    page.locator("#password").fill(password)
    page.locator("#consent").check()
    page.locator("#password-submit").click()


def test_accept_a_new_agreement_version(
    browser: Any, consent_gateway: ConsentGateway, console: ConsoleWatch
) -> None:
    # No certificate helper runs for this gateway: the USB-key tab says what to do.
    console.allow("net::ERR_CONNECTION_REFUSED", "/v1/certificates")
    get_accounts(consent_gateway.app).create_person(
        real_name="郑十一",
        id_card_number=random_id_card_number(),
        login_name="zheng-consent",
        password=PASSWORD,
        at=consent_gateway.app.extensions["certgate.clock"].now(),
    )
    context = browser.new_context(base_url=consent_gateway.url, viewport=DESKTOP)
    try:
        page = context.new_page()
        page.on("console", console.record)
        page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
        page.goto("/login?lang=zh-CN")
        scripts_ready(page, "login")
        expect(page.locator("#helper-missing")).to_be_visible()
        check_layout(page, "login-helper-missing-zh-CN-desktop")
        password_login(page, "zheng-consent")
        expect(page).to_have_url(re.compile(r"/account$"))

        publish_agreement(consent_gateway, "2027-01", "新增个人信息保存期限条款")
        page.goto("/account")
        expect(page).to_have_url(re.compile(r"/consent\?next=/account$"))
        expect(page.locator("#consent-summary")).to_have_text("新增个人信息保存期限条款")
        check_layout(page, "consent-zh-CN-desktop")
        page.get_by_role("button", name="我已阅读并同意").click()
        expect(page).to_have_url(re.compile(r"/account$"))
        scripts_ready(page, "account")
        expect(page.locator("#account-facts")).to_contain_text("已同意版本 2027-01")
        expect(page.locator("#consents")).to_contain_text("2027-01")
        expect(page.locator("#consents")).to_contain_text("2026-01")
        # And the notice of the new version is among the messages.
        page.get_by_role("link", name=re.compile("站内消息")).click()
        scripts_ready(page, "messages")
        expect(page.locator('#messages li[data-kind="agreement_published"] h3')).to_have_text(
            "服务协议已更新"
        )
        check_layout(page, "messages-agreement-zh-CN-desktop")
    finally:
        context.close()
    assert console.errors == [], "the browser logged errors"


# --- every screen in English and at phone width ---------------------------------------------


@pytest.mark.parametrize(
    ("page", "language", "width"),
    [(DESKTOP, "en", "desktop"), (PHONE_WIDTH, "zh-CN", "phone"), (PHONE_WIDTH, "en", "phone")],
    indirect=["page"],
)
def test_screen_tour(page: Any, stack: Stack, language: str, width: str) -> None:
    suffix = f"{language}-{width}"
    page.goto(f"/login?lang={language}")
    scripts_ready(page, "login")
    expect(page.locator("#certificate-list input").first).to_be_visible()
    check_layout(page, f"login-token-{suffix}")
    page.locator("#kind-enterprise").click()
    expect(page.locator("#certificate-list .tag.kind").first).to_have_attribute(
        "data-kind", "enterprise"
    )
    check_layout(page, f"login-enterprise-{suffix}")
    page.locator("#kind-person").click()
    for tab in ("qr", "password", "sms"):
        page.locator(f"#tab-{tab}").click()
        check_layout(page, f"login-{tab}-{suffix}")
    for path, name in (
        ("/register", "register-person"),
        ("/register?kind=enterprise", "register-enterprise"),
        ("/password/reset", "reset"),
        ("/privacy", "privacy"),
        ("/agreement", "agreement"),
        ("/consent", "consent"),
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        check_layout(page, f"{name}-{suffix}")

    login_name = f"tour-{language.lower()}-{width}"
    get_accounts(stack.app).create_person(
        real_name="冯十二",
        id_card_number=random_id_card_number(),
        phone=random_phone(),
        login_name=login_name,
        password=PASSWORD,
        at=stack.app.extensions["certgate.clock"].now(),
    )
    page.goto("/login")
    scripts_ready(page, "login")
    password_login(page, login_name)
    expect(page).to_have_url(re.compile(r"/account$"))
    scripts_ready(page, "account")
    expect(page.locator("#history tbody tr").first).to_be_visible()
    check_layout(page, f"account-{suffix}")
    page.goto("/messages")
    scripts_ready(page, "messages")
    check_layout(page, f"messages-{suffix}")
