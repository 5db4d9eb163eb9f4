"""The login page before a key is usable: no agent running, an agent with no key, a key plugged in.

A gateway of its own, whose agent uses a SoftHSM directory of its own that starts empty. "Plugging
in" the key moves a ready token (made in another directory) into the agent's token directory in
one rename, so the key appears with its certificate, as a USB key does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from gateway import create_app
from softhsm.kit import SoftHsmKit
from softhsm.pki import TestPki, random_uscc
from tests.e2e.conftest import (
    ConsoleWatch,
    _start_agent,
    _wait_for_agent,
    screenshot,
    scripts_ready,
    stop_process,
)
from tests.fixtures_pki import PKI_EPOCH, free_port
from tests.gateway.conftest import DATA_KEY, close_app
from tests.gateway.serving import ServedApp
from tokens.pkcs11 import SOFTHSM_MODULE


@dataclass
class BareStack:
    url: str
    agent_url: str
    agent_kit: SoftHsmKit
    spare_kit: SoftHsmKit
    agents: list[subprocess.Popen[bytes]]

    def start_agent(self) -> None:
        agent = _start_agent(self.url, self.agent_url, SOFTHSM_MODULE, self.agent_kit.environ())
        self.agents.append(agent)
        _wait_for_agent(self.agent_url, self.url, agent)


@pytest.fixture
def bare_stack(tmp_path: Path) -> Iterator[BareStack]:
    served = ServedApp(threads=4)
    url = served.url
    agent_url = f"http://127.0.0.1:{free_port()}"
    app = create_app(
        {
            "CONFIG_FILE": None,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.sqlite3'}",
            "PUBLIC_ORIGIN": url,
            "DATA_KEY": DATA_KEY,
            "AGENT_URL": agent_url,
        }
    )
    served.app = app
    served.start()
    stack = BareStack(
        url, agent_url, SoftHsmKit(tmp_path / "agent"), SoftHsmKit(tmp_path / "spare"), []
    )
    try:
        yield stack
    finally:
        for agent in stack.agents:
            stop_process(agent)
        served.stop()
        close_app(app)


def test_agent_missing_then_no_key_then_key_plugged_in(
    browser: Any, bare_stack: BareStack, test_pki: TestPki, console: ConsoleWatch
) -> None:
    console.allow("net::ERR_CONNECTION_REFUSED", "/v1/certificates")
    context = browser.new_context(base_url=bare_stack.url)
    try:
        page = context.new_page()
        page.on("console", console.record)
        page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
        page.goto("/login")
        scripts_ready(page, "login")
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("未检测到本机证书助手")
        # Written for the person at the computer: what to start or get, and the browser's
        # local-network prompt (Chrome 142+) to allow; no developer command line.
        helper = page.locator("#helper-missing")
        expect(helper.get_by_role("heading")).to_have_text("证书助手未运行")
        expect(helper).to_contain_text("打开“证书助手”")
        expect(helper).to_contain_text("索取证书助手安装程序")
        expect(helper).to_contain_text("访问您本地网络上的设备")
        expect(helper).to_contain_text("本地网络访问")
        expect(page.locator("main")).not_to_contain_text("certgate agent serve")
        screenshot(page, "login-agent-not-running")

        bare_stack.start_agent()
        page.get_by_role("button", name="重新检测").click()
        expect(alert).to_have_text(
            "未检测到 USB Key。请插入 USB Key，页面会自动刷新；或点击“重新检测”。"
        )

        # Plug the key in: a token with an enterprise certificate appears in the agent's
        # directory; the page hears the agent's token_inserted event and lists it.
        spare = bare_stack.spare_kit
        spare.init_token("plugged-in", "123456", "12345678")
        spare.issue(
            label="plugged-in",
            pin="123456",
            pki=test_pki,
            kind="enterprise",
            name="插入测试有限公司",
            uscc=random_uscc(),
            at=PKI_EPOCH,
        )
        (token_directory,) = spare.tokens_directory.iterdir()
        bare_stack.agent_kit.environ()  # creates the agent kit's directories
        os.rename(token_directory, bare_stack.agent_kit.tokens_directory / token_directory.name)
        expect(page.get_by_label("插入测试有限公司")).to_be_visible()
        expect(alert).to_be_hidden()
        expect(helper).to_be_hidden()
        expect(page.get_by_role("status").first).to_have_text("已找到 1 张证书。")
        screenshot(page, "login-key-plugged-in")
    finally:
        context.close()
    assert console.errors == [], "the browser logged errors"
