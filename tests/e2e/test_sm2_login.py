"""An SM2 USB key in Chromium: the agent serves SoftHSM and the SM2 UKey module side by side
(``--module`` twice, ``--sm2-mechanism`` for the SM2 one's vendor mechanism), the login page
lists the SM2 certificate beside the SoftHSM ones, and signing in with it lands in the person's
account; pulling the SM2 key out signs the session out."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect

from gateway.accounts import get_accounts
from softhsm.pki import TestPki, random_id_card_number
from softhsm.sm2_ukey import SM2_SM3_MECHANISM
from tests.e2e.conftest import (
    ConsoleWatch,
    E2eTokens,
    _gateway_app,
    _wait_for_agent,
    screenshot,
    scripts_ready,
    stop_process,
)
from tests.fixtures_sm2_ukey import MakeSm2Token, Sm2Credential
from tests.gateway.conftest import close_app
from tests.gateway.serving import ServedApp
from tokens.pkcs11 import SOFTHSM_MODULE


@dataclass(frozen=True)
class Sm2Stack:
    url: str
    app: Flask
    holder: Sm2Credential


@pytest.fixture(scope="module")
def sm2_stack(
    tmp_path_factory: pytest.TempPathFactory,
    test_pki: TestPki,
    e2e_tokens: E2eTokens,
    make_sm2_token: MakeSm2Token,
) -> Iterator[Sm2Stack]:
    number = random_id_card_number()
    holder = make_sm2_token(name="钱七", id_number=number)
    served = ServedApp(threads=4)
    url = served.url
    app, agent_url = _gateway_app(tmp_path_factory, test_pki, e2e_tokens, url)
    clock = app.extensions["certgate.clock"]
    get_accounts(app).create_person(real_name="钱七", id_card_number=number, at=clock.now())
    served.app = app
    served.start()
    certgate = Path(sys.executable).with_name("certgate")
    agent = subprocess.Popen(
        [str(certgate), "agent", "serve", "--module", SOFTHSM_MODULE, "--module", holder.module,
         "--sm2-mechanism", f"{SM2_SM3_MECHANISM:#x}", "--allow-origin", url,
         "--port", agent_url.rsplit(":", 1)[1], "--no-pcsc"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_agent(agent_url, url, agent)
        yield Sm2Stack(url, app, holder)
    finally:
        stop_process(agent)
        served.stop()
        close_app(app)


@pytest.fixture
def sm2_page(browser: Any, sm2_stack: Sm2Stack, console: ConsoleWatch) -> Iterator[Any]:
    context = browser.new_context(base_url=sm2_stack.url, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.on("console", console.record)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    try:
        yield page
    finally:
        context.close()
    assert console.errors == [], "the browser logged errors"


def test_sm2_usb_key_login(sm2_page: Any, sm2_stack: Sm2Stack, e2e_tokens: E2eTokens) -> None:
    page, holder = sm2_page, sm2_stack.holder
    page.goto("/login")
    scripts_ready(page, "login")
    sm2_choice = page.locator(
        f'input[name="certificate"][value="{holder.token_label}/{holder.cert_id.hex()}"]'
    )
    softhsm_choice = page.locator(
        'input[name="certificate"]'
        f'[value="{e2e_tokens.enterprise.token_label}/{e2e_tokens.enterprise.cert_id.hex()}"]'
    )
    expect(sm2_choice).to_have_count(1)
    expect(softhsm_choice).to_have_count(1)  # both modules' keys are offered
    sm2_choice.check()
    page.get_by_label("USB Key 口令（PIN）").fill(holder.pin)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#account-name")).to_have_text("钱七")
    expect(page.locator("#account-kind")).to_have_text("个人账户")
    expect(page.locator("#account-facts")).to_contain_text("证书密钥 + PIN")
    expect(page.locator("#history")).to_contain_text("登录 · USB Key")
    screenshot(page, "account-after-sm2-login")
    records = [
        r for r in sm2_stack.app.extensions["certgate.audit"].records() if r.method == "token"
    ]
    assert [r.outcome for r in records][-1] == "ok"
    # Pulling the SM2 key out ends the session, as with any USB key.
    holder.ukeys.delete_token(holder.token_label)
    expect(page).to_have_url(re.compile(r"/login\?reason=key_removed$"))
