"""The account's life in Chromium: binding a USB key from the account page (a fresh signature by
the agent), the in-site messages page, and cancellation; in zh-CN and en, desktop and phone
width."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from certs.identity import extract_identity
from gateway.accounts import get_accounts
from gateway.audit import get_audit_log
from tests.e2e.conftest import PASSWORD, ConsoleWatch, Stack, screenshot, scripts_ready

PHONE = "13812345670"
NAME = "周八"
TEXTS = {
    "zh-CN": {
        "bind": "绑定此 USB Key",
        "pin": "PIN 码",
        "submit": "确认绑定",
        "bound": "证书已绑定，实名等级已提升为 2 级。",
        "messages": "站内消息",
        "notice": "证书已绑定",
        "confirm": "我已了解注销的后果，确认注销本账户",
        "cancel": "注销账户",
        "cancelled": "账户已注销，您的个人信息已删除。",
    },
    "en": {
        "bind": "Bind this USB key",
        "pin": "PIN",
        "submit": "Bind",
        "bound": "The certificate is bound; the real-name level is now 2.",
        "messages": "Messages",
        "notice": "Certificate bound",
        "confirm": "I understand what cancelling means and want to cancel this account",
        "cancel": "Cancel the account",
        "cancelled": "The account is cancelled and your personal data deleted.",
    },
}
PHONE_WIDTH = {"width": 390, "height": 844}


def sign_in(page: Any, identifier: str) -> None:
    """Password login on the zh-CN page (the language cookie is set afterwards)."""
    page.goto("/login?lang=zh-CN")
    scripts_ready(page, "login")
    page.get_by_role("tab", name="账号密码登录").click()
    page.get_by_label("登录名 / 统一社会信用代码 / 手机号 / 身份证号").fill(identifier)
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).last.click()
    expect(page).to_have_url(re.compile(r"/account$"))


@pytest.mark.parametrize(
    ("page", "language", "width"),
    [
        ({"width": 1100, "height": 900}, "zh-CN", "desktop"),
        (PHONE_WIDTH, "en", "phone"),
    ],
    indirect=["page"],
)
def test_bind_a_key_read_the_notice_and_cancel(
    page: Any, stack: Stack, console: ConsoleWatch, language: str, width: str
) -> None:
    texts = TEXTS[language]
    accounts = get_accounts(stack.app)
    clock = stack.app.extensions["certgate.clock"]
    # The person whose USB key maps to no account yet ("unbound"): the account takes the
    # number on the certificate, and binding the key from the page raises it to level 2.
    credential = stack.tokens.unbound
    number = extract_identity(credential.provisioned.certificate).id_card_number
    assert number is not None
    person = accounts.create_person(
        real_name=NAME,
        id_card_number=number,
        phone=PHONE,
        login_name=f"zhouba-{width}",
        password=PASSWORD,
        at=clock.now(),
    )
    sign_in(page, f"zhouba-{width}")
    page.goto(f"/account?lang={language}")
    scripts_ready(page, "account")
    expect(page.locator('html[data-account-life="ready"]')).to_have_count(1)

    page.get_by_role("button", name=texts["bind"]).click()
    options = page.locator("#bind-certificates input")
    expect(options.first).to_be_visible()
    page.locator(f'#bind-certificates input[data-token-label="{credential.token_label}"]').check()
    page.get_by_label(texts["pin"], exact=True).fill(credential.pin)
    page.get_by_role("button", name=texts["submit"]).click()
    expect(page.locator("#account-status")).to_have_text(texts["bound"])
    expect(page.locator("#certificates li")).to_have_count(1)
    expect(page.locator("#messages-unread")).to_be_visible()
    screenshot(page, f"account-bound-{language}-{width}")

    page.get_by_role("link", name=re.compile(texts["messages"])).click()
    scripts_ready(page, "messages")
    expect(page.locator('#messages li[data-kind="certificate_bound"] h3')).to_have_text(
        texts["notice"]
    )
    screenshot(page, f"messages-{language}-{width}")

    page.goto(f"/account?lang={language}")
    scripts_ready(page, "account")
    expect(page.locator('html[data-account-life="ready"]')).to_have_count(1)
    page.get_by_label(texts["confirm"]).check()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=texts["cancel"], exact=True).click()
    expect(page).to_have_url(re.compile(r"/login\?reason=cancelled$"))
    expect(page.locator("#reason")).to_have_text(texts["cancelled"])
    screenshot(page, f"cancelled-{language}-{width}")

    assert accounts.find(person.id).status == "cancelled"
    assert get_audit_log(stack.app).verify() == []
    database = Path(stack.app.config["DATABASE_URL"].removeprefix("sqlite:///"))
    stored = b"".join(
        path.read_bytes() for path in database.parent.glob(database.name + "*") if path.is_file()
    )
    for plaintext in (NAME, number, PHONE):
        assert plaintext.encode("utf-8") not in stored, "personal data left in the database file"
