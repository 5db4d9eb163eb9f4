"""Enterprise roles as people go through them, in Chromium: the enterprise invites a person as
staff (经办人) on its account page; the person accepts on theirs, signed in with their own USB
key, switches to act for the enterprise (the banner on every page says so), and the example
OpenID Connect application (scope ``openid profile certgate.enterprise``) shows ``acting_for``;
then the role's period ends on the gateway's clock and acting is refused, on the gateway's
pages and at the application's next sign-in.

The application checks the ID token's ``iat``/``exp`` against its own clock, so this module's
gateway runs on a ``FixedClock`` set to the wall clock when the module starts (a PKI made then,
as in test_sso_apps.py); the test moves that clock past ``valid_until``. The invitation form
takes a date (the role lasts to the end of that day in Beijing), so the clock jumps up to two
days: the gateway's session timeouts are set longer than that jump, so the same browser session
meets the ended role instead of a signed-out page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import hashes
from flask import Flask
from playwright.sync_api import expect

from gateway import create_app
from gateway.accounts import get_accounts
from gateway.clock import FixedClock
from gateway.sso.clients import get_clients
from softhsm.kit import ProvisionedCertificate, SoftHsmKit
from softhsm.pki import CA_NAMES, TestPki, random_id_card_number, random_uscc
from tests.e2e.conftest import (
    ENTERPRISE_LOGIN,
    ENTERPRISE_NAME,
    PASSWORD,
    ConsoleWatch,
    _start_agent,
    _wait_for_agent,
    screenshot,
    scripts_ready,
    stop_process,
)
from tests.e2e.test_account_journeys import LAYOUT_PROBLEMS
from tests.e2e.test_sso_apps import _start_example, _wait_for_app
from tests.fixtures_pki import free_port, free_port_block
from tests.fixtures_softhsm import TOKEN_PIN, TOKEN_SO_PIN, unique_token_label
from tests.gateway.conftest import DATA_KEY, close_app, pki_anchor_config
from tests.gateway.serving import ServedApp
from tokens.pkcs11 import SOFTHSM_MODULE

BEIJING = ZoneInfo("Asia/Shanghai")
PERSON_NAME = "孙七"
SESSION_SECONDS = 4 * 24 * 3600  # longer than the clock's jump past the role's last day


@dataclass(frozen=True)
class RolesStack:
    url: str
    app: Flask
    clock: FixedClock
    token_label: str
    person_key: ProvisionedCertificate
    person_id_number: str
    uscc: str
    oidc_url: str


@pytest.fixture(scope="module")
def roles_stack(
    tmp_path_factory: pytest.TempPathFactory, softhsm_kit: SoftHsmKit
) -> Iterator[RolesStack]:
    directory = tmp_path_factory.mktemp("roles-e2e")
    pki = TestPki.create(
        directory / "pki", crl_port=free_port(), ocsp_port=free_port_block(len(CA_NAMES))
    )
    uscc, id_number = random_uscc(), random_id_card_number()
    label = unique_token_label()
    softhsm_kit.init_token(label, TOKEN_PIN, TOKEN_SO_PIN)
    person_key = softhsm_kit.issue(
        label=label, pin=TOKEN_PIN, pki=pki, kind="person", name=PERSON_NAME,
        id_number=id_number, key="p256", ca="p256",
    )  # fmt: skip
    served = ServedApp(threads=8)
    url = served.url
    agent_url = f"http://127.0.0.1:{free_port()}"
    oidc_port = free_port()
    oidc_url = f"http://127.0.0.1:{oidc_port}"
    clock = FixedClock(datetime.now(UTC))
    app = create_app(
        {
            "CONFIG_FILE": None,
            "DATABASE_URL": f"sqlite:///{directory / 'gateway.sqlite3'}",
            "PUBLIC_ORIGIN": url,
            "DATA_KEY": DATA_KEY,
            "CLOCK": clock,
            "TRUST_ANCHORS": [pki_anchor_config(pki)],
            "AGENT_URL": agent_url,
            "PASSWORD_MEMORY_COST": 1024,
            "PASSWORD_TIME_COST": 1,
            "SESSION_IDLE_TIMEOUT": SESSION_SECONDS,
            "SESSION_ABSOLUTE_TIMEOUT": SESSION_SECONDS,
        }
    )
    now = clock.now()
    accounts = get_accounts(app)
    accounts.create_enterprise(
        unified_social_credit_code=uscc,
        name=ENTERPRISE_NAME,
        login_name=ENTERPRISE_LOGIN,
        password=PASSWORD,
        at=now,
    )
    person = accounts.create_person(real_name=PERSON_NAME, id_card_number=id_number, at=now)
    thumbprint = person_key.certificate.fingerprint(hashes.SHA256()).hex()
    accounts.bind(person.id, "sha256", thumbprint, at=now, label="USB key")
    oidc = get_clients(app).add(
        "示例应用（OpenID Connect）",
        protocol="oidc",
        at=now,
        redirect_uris=(oidc_url + "/callback",),
        post_logout_redirect_uris=(oidc_url + "/",),
        backchannel_logout_uri=oidc_url + "/backchannel-logout",
    )
    served.app = app
    served.start()
    processes = []
    try:
        processes.append(_start_agent(url, agent_url, SOFTHSM_MODULE, {}))
        assert oidc.client_secret is not None
        log = directory / "oidc_app.log"
        arguments = ["--port", str(oidc_port), "--issuer", url]
        arguments += ["--client-id", oidc.client.client_id]
        processes.append(
            _start_example(
                "examples.oidc_app", arguments, {"OIDC_APP_CLIENT_SECRET": oidc.client_secret}, log
            )
        )
        _wait_for_agent(agent_url, url, processes[0])
        _wait_for_app(oidc_url, processes[1], log)
        yield RolesStack(url, app, clock, label, person_key, id_number, uscc, oidc_url)
        assert oidc.client_secret not in log.read_text(errors="replace")
    finally:
        for process in reversed(processes):
            stop_process(process)
        served.stop()
        softhsm_kit.delete_token(label)
        close_app(app)


@pytest.fixture
def roles_context(browser: Any, console: ConsoleWatch) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.on(
        "page",
        lambda page: (
            page.on("console", console.record),
            page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}")),
        ),
    )
    try:
        yield context
    finally:
        context.close()
    assert console.errors == [], "\n".join(console.errors)


def check_page(page: Any, name: str) -> None:
    """Screenshot ``name``; no overflow, no broken word and no untranslated text key."""
    screenshot(page, name)
    assert page.evaluate(LAYOUT_PROBLEMS) == [], name
    text = page.locator("body").inner_text()
    keys = re.findall(r"\b(?:roles|role|staff|acting|account)\.[a-z_.]+\b", text)
    assert keys == [], f"{name}: untranslated {keys}"


def password_login(page: Any, stack: RolesStack) -> None:
    page.goto(stack.url + "/login")
    scripts_ready(page, "login")
    page.get_by_role("tab", name="账号密码登录").click()
    page.get_by_label("登录名 / 统一社会信用代码 / 手机号 / 身份证号").fill(ENTERPRISE_LOGIN)
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).last.click()
    expect(page).to_have_url(re.compile(r"/account$"))


def usb_key_login(page: Any, stack: RolesStack) -> None:
    page.goto(stack.url + "/login")
    scripts_ready(page, "login")
    value = f"{stack.token_label}/{stack.person_key.cert_id.hex()}"
    page.locator(f'input[name="certificate"][value="{value}"]').check()
    page.get_by_label("USB Key 口令（PIN）").fill(TOKEN_PIN)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"/account$"))


def roles_ready(page: Any) -> None:
    expect(page.locator('html[data-roles="ready"]')).to_have_count(1)


def last_day(stack: RolesStack) -> datetime:
    """Tomorrow in Beijing: the date typed in the invitation form."""
    return datetime.combine(stack.clock.now().astimezone(BEIJING).date(), time()) + timedelta(
        days=1
    )


def test_staff_invited_accepted_acting_in_the_application_then_expired(
    roles_stack: RolesStack, roles_context: Any, console: ConsoleWatch
) -> None:
    stack = roles_stack
    day = last_day(stack).date()

    # The enterprise, signed in with its password, invites the person by ID-card number.
    enterprise = roles_context.new_page()
    password_login(enterprise, stack)
    roles_ready(enterprise)
    staff = enterprise.locator("#staff-card")
    expect(staff).to_be_visible()
    expect(staff.get_by_role("heading", level=2)).to_have_text("经办人管理")
    staff.get_by_label("按何种信息邀请").select_option("id_card_number")
    staff.get_by_label("受邀人的身份证号码或手机号码").fill(stack.person_id_number)
    staff.get_by_label("授权截止日期（含当日）").fill(day.isoformat())
    staff.get_by_role("button", name="发送邀请").click()
    expect(enterprise.locator("#staff-status")).to_have_text(
        "邀请已发送，对方登录后可在账户页面接受。"
    )
    masked = stack.person_id_number[:4]
    expect(enterprise.locator("#staff-invitations")).to_contain_text(masked)
    assert stack.person_id_number not in enterprise.locator("#staff-card").inner_text()
    check_page(enterprise, "roles-enterprise-invites")
    enterprise.get_by_role("button", name="退出登录").click()
    expect(enterprise).to_have_url(re.compile(r"/login\?reason=signed_out$"))
    enterprise.close()

    # The person signs in with their own USB key and accepts on their account page.
    person = roles_context.new_page()
    usb_key_login(person, stack)
    roles_ready(person)
    expect(person.locator("#account-name")).to_have_text(PERSON_NAME)
    roles = person.locator("#roles-card")
    expect(roles.get_by_role("heading", level=2)).to_have_text("企业身份")
    invitation = roles.locator("#invitation-items li").filter(has_text=ENTERPRISE_NAME)
    expect(invitation).to_contain_text(stack.uscc)
    expect(invitation).to_contain_text("经办人")
    check_page(person, "roles-person-invited")
    invitation.get_by_role("button", name="接受").click()
    expect(person.locator("#roles-status")).to_have_text(
        "已接受邀请，您现在可以代表该企业办理业务。"
    )
    expect(roles.locator("#invitation-items")).to_have_count(0)

    # Acting for the enterprise: the page reloads with the banner.
    role = roles.locator("#role-items li").filter(has_text=ENTERPRISE_NAME)
    role.get_by_role("button", name="代表企业办理").click()
    banner = person.locator("#acting-banner")
    expect(banner).to_contain_text("您正在代表企业办理业务：")
    expect(banner).to_contain_text(ENTERPRISE_NAME)
    expect(banner).to_contain_text(stack.uscc)
    expect(banner).to_contain_text("经办人")
    roles_ready(person)
    expect(roles.locator("#role-items li").filter(has_text="正在代表")).to_have_count(1)
    # The person stays the account: their own name, the enterprise named beside it.
    expect(person.locator("#account-name")).to_have_text(PERSON_NAME)
    check_page(person, "roles-person-acting")
    # The banner is on every page of the gateway.
    for path in ("/messages", "/privacy"):
        person.goto(stack.url + path)
        expect(person.locator("#acting-banner")).to_contain_text(ENTERPRISE_NAME)
    check_page(person, "roles-banner-privacy")

    # The OpenID Connect application receives acting_for (scope certgate.enterprise).
    application = roles_context.new_page()
    application.goto(stack.oidc_url + "/")
    application.locator("#login").click()
    expect(application.locator("#acting-banner")).to_contain_text(ENTERPRISE_NAME)  # consent
    application.locator("#consent-allow").click()
    expect(application).to_have_url(stack.oidc_url + "/")
    expect(application.locator("#account-name")).to_have_text(PERSON_NAME)
    expect(application.locator("#account-kind")).to_have_text("person")
    expect(application.locator("#acting-for-uscc")).to_have_text(stack.uscc)
    expect(application.locator("#acting-for-name")).to_have_text(ENTERPRISE_NAME)
    expect(application.locator("#acting-for-role")).to_have_text("staff")
    expect(application.locator("#amr")).to_have_text("swk pin")
    screenshot(application, "roles-oidc-app-acting-for")

    # The role's last day passes on the gateway's clock.
    ends = last_day(stack).replace(tzinfo=BEIJING) + timedelta(days=1)
    stack.clock.advance((ends - stack.clock.now()).total_seconds() + 60)

    # The gateway's pages say the role has ended, in red, and offer switching back.
    # The account page's own calls are refused while acting on an ended role (role_required).
    for path in ("", "/messages", "/consents", "/invitations"):
        path = "/api/v1/account" + path
        console.allow(403, path)
    person.goto(stack.url + "/account")
    banner = person.locator("#acting-banner")
    expect(banner).to_have_class(re.compile(r"\bended\b"))
    expect(banner).to_contain_text("您代表企业的身份已失效")
    expect(banner).to_contain_text(ENTERPRISE_NAME)
    expect(person.locator("#account-error")).to_have_text(
        "您当前不是该企业的法定代表人或有效期内的经办人（授权可能已到期、被撤销或"
        "法定代表人已变更），不能代表该企业办理业务。请切换回个人身份。"
    )
    roles_ready(person)
    check_page(person, "roles-person-role-ended")

    # The application's next sign-in is refused by the gateway with a page saying why.
    console.allow(403, "/oauth/authorize")
    application.goto(stack.oidc_url + "/login")
    expect(application.get_by_text("不能代表该企业办理业务", exact=False)).to_be_visible()
    check_page(application, "roles-sign-on-refused")
    assert "code=" not in application.url

    # Switching back to oneself clears the banner; the enterprise is no longer offered.
    person.get_by_role("button", name="切换回个人身份").click()
    expect(person.locator("#acting-banner")).to_have_count(0)
    roles_ready(person)
    expect(person.locator("#account-error")).to_be_hidden()
    expect(person.locator("#roles-list")).to_have_text("您目前不能代表任何企业。")
    check_page(person, "roles-person-switched-back")
