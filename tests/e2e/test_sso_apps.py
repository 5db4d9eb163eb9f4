"""The example applications (examples/oidc_app, examples/cas_app) signing a person in through
CertGate with the USB key, in Chromium, and both sessions ending when the key is pulled.

This module runs its own stack on the wall clock: the applications check the ID token's
``exp``/``iat`` and the logout token's ``iat`` against their own clock, as relying parties do,
so the gateway cannot run on the e2e suite's fixed clock. A PKI made now, a SoftHSM token with
an enterprise certificate from it, the gateway (waitress, in this process), the signing agent,
and the two applications as ``python -m examples.<name>`` child processes registered as clients
(the OpenID Connect one with its back-channel logout URI, the CAS one with its service prefix).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from flask import Flask
from playwright.sync_api import expect

from gateway import create_app
from gateway.accounts import get_accounts
from gateway.sso.clients import get_clients
from softhsm.kit import ProvisionedCertificate, SoftHsmKit
from softhsm.pki import CA_NAMES, TestPki, random_uscc
from tests.e2e.conftest import (
    ENTERPRISE_NAME,
    ConsoleWatch,
    _start_agent,
    _wait_for_agent,
    screenshot,
    scripts_ready,
    stop_process,
)
from tests.fixtures_pki import free_port, free_port_block
from tests.fixtures_softhsm import TOKEN_PIN, TOKEN_SO_PIN, unique_token_label
from tests.gateway.conftest import DATA_KEY, close_app, pki_anchor_config
from tests.gateway.serving import ServedApp
from tokens.pkcs11 import SOFTHSM_MODULE

REPOSITORY = Path(__file__).resolve().parents[2]
APP_START_SECONDS = 30
LOGOUT_SECONDS = 30  # single logout is delivered from a queue, with retries


@dataclass(frozen=True)
class SsoStack:
    url: str
    app: Flask
    kit: SoftHsmKit
    token_label: str
    provisioned: ProvisionedCertificate
    uscc: str
    oidc_url: str
    cas_url: str


def _wait_for_app(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + APP_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in time")


def _start_example(
    module: str, arguments: list[str], environment: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            cwd=REPOSITORY,
            env={**os.environ, **environment},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def sso_stack(
    tmp_path_factory: pytest.TempPathFactory, softhsm_kit: SoftHsmKit
) -> Iterator[SsoStack]:
    directory = tmp_path_factory.mktemp("sso-e2e")
    pki = TestPki.create(
        directory / "pki", crl_port=free_port(), ocsp_port=free_port_block(len(CA_NAMES))
    )
    uscc = random_uscc()
    label = unique_token_label()
    softhsm_kit.init_token(label, TOKEN_PIN, TOKEN_SO_PIN)
    provisioned = softhsm_kit.issue(
        label=label, pin=TOKEN_PIN, pki=pki, kind="enterprise", name=ENTERPRISE_NAME, uscc=uscc
    )
    served = ServedApp(threads=8)
    url = served.url
    agent_url = f"http://127.0.0.1:{free_port()}"
    oidc_port, cas_port = free_port(), free_port()
    oidc_url, cas_url = f"http://127.0.0.1:{oidc_port}", f"http://127.0.0.1:{cas_port}"
    app = create_app(
        {
            "CONFIG_FILE": None,
            "DATABASE_URL": f"sqlite:///{directory / 'gateway.sqlite3'}",
            "PUBLIC_ORIGIN": url,
            "DATA_KEY": DATA_KEY,
            "TRUST_ANCHORS": [pki_anchor_config(pki)],
            "AGENT_URL": agent_url,
            "PASSWORD_MEMORY_COST": 1024,
            "PASSWORD_TIME_COST": 1,
        }
    )
    now = app.extensions["certgate.clock"].now()
    enterprise = get_accounts(app).create_enterprise(
        unified_social_credit_code=uscc, name=ENTERPRISE_NAME, at=now
    )
    thumbprint = provisioned.certificate.fingerprint(hashes.SHA256()).hex()
    get_accounts(app).bind(enterprise.id, "sha256", thumbprint, at=now, label="USB key")
    clients = get_clients(app)
    oidc = clients.add(
        "示例应用（OpenID Connect）",
        protocol="oidc",
        at=now,
        redirect_uris=(oidc_url + "/callback",),
        post_logout_redirect_uris=(oidc_url + "/",),
        backchannel_logout_uri=oidc_url + "/backchannel-logout",
    )
    clients.add("示例应用（CAS）", protocol="cas", at=now, services=(cas_url + "/",))
    served.app = app
    served.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(_start_agent(url, agent_url, SOFTHSM_MODULE, {}))
        assert oidc.client_secret is not None
        oidc_arguments = ["--port", str(oidc_port), "--issuer", url]
        oidc_arguments += ["--client-id", oidc.client.client_id]
        oidc_log, cas_log = directory / "oidc_app.log", directory / "cas_app.log"
        processes.append(
            _start_example(
                "examples.oidc_app",
                oidc_arguments,
                {"OIDC_APP_CLIENT_SECRET": oidc.client_secret},
                oidc_log,
            )
        )
        cas_arguments = ["--port", str(cas_port), "--cas-url", url + "/cas"]
        processes.append(_start_example("examples.cas_app", cas_arguments, {}, cas_log))
        _wait_for_agent(agent_url, url, processes[0])
        _wait_for_app(oidc_url, processes[1], oidc_log)
        _wait_for_app(cas_url, processes[2], cas_log)
        yield SsoStack(url, app, softhsm_kit, label, provisioned, uscc, oidc_url, cas_url)
        for log in (oidc_log, cas_log):
            # The applications' secrets never reach their logs.
            text = log.read_text(errors="replace")
            assert oidc.client_secret not in text
            assert "ST-" not in text and "code=" not in text
    finally:
        for process in reversed(processes):
            stop_process(process)
        served.stop()
        close_app(app)


@pytest.fixture
def sso_context(browser: Any, console: ConsoleWatch) -> Iterator[Any]:
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


def _usb_key_login(page: Any, stack: SsoStack) -> None:
    """On the gateway's login page the person picks the certificate, types the PIN, ticks the
    agreement and signs in."""
    expect(page).to_have_url(re.compile(re.escape(stack.url) + r"/login\?"))
    scripts_ready(page, "login")
    value = f"{stack.token_label}/{stack.provisioned.cert_id.hex()}"
    page.locator(f'input[name="certificate"][value="{value}"]').check()
    page.get_by_label("USB Key 口令（PIN）").fill(TOKEN_PIN)
    page.get_by_label("我已阅读并同意").check()
    page.get_by_role("button", name="登录", exact=True).first.click()


def _shows_the_enterprise(page: Any, stack: SsoStack, *, amr: str) -> None:
    expect(page.locator("#account-name")).to_have_text(ENTERPRISE_NAME)
    expect(page.locator("#account-kind")).to_have_text("enterprise")
    expect(page.locator("#uscc")).to_have_text(stack.uscc)
    # SoftHSM is a software key: the test PKI's anchor does not vouch for hardware keys.
    expect(page.locator("#acr")).to_have_text("urn:certgate:loa:3")
    expect(page.locator("#amr")).to_have_text(amr)


def test_both_applications_sign_in_with_the_usb_key_and_end_when_it_is_pulled(
    sso_stack: SsoStack, sso_context: Any, console: ConsoleWatch
) -> None:
    stack = sso_stack
    # OpenID Connect: the application sends the person to CertGate, which asks for the USB key,
    # then for consent, and returns the person with a code the application exchanges.
    oidc = sso_context.new_page()
    oidc.goto(stack.oidc_url + "/")
    expect(oidc.locator("#signed-out")).to_be_visible()
    oidc.locator("#login").click()
    _usb_key_login(oidc, stack)
    oidc.locator("#consent-allow").click()
    expect(oidc).to_have_url(stack.oidc_url + "/")
    _shows_the_enterprise(oidc, stack, amr="swk pin")
    screenshot(oidc, "sso-oidc-app")

    # CAS: the gateway session is there already, so no second login.
    cas = sso_context.new_page()
    cas.goto(stack.cas_url + "/")
    expect(cas.locator("#signed-out")).to_be_visible()
    cas.locator("#login").click()
    expect(cas).to_have_url(stack.cas_url + "/")
    # The p3 attributes carry amr as one <cas:amr> element per method, as the ID token's list.
    _shows_the_enterprise(cas, stack, amr="swk pin")
    screenshot(cas, "sso-cas-app")

    # The gateway's account page watches the key; pulling it ends the gateway session, and
    # single logout ends both applications' sessions.
    account = sso_context.new_page()
    account.goto(stack.url + "/account")
    expect(account.locator("#key-watch")).to_be_visible()
    stack.kit.delete_token(stack.token_label)
    expect(account).to_have_url(re.compile(r"/login\?reason=key_removed$"))
    console.allow(401, "/api/v1/session")
    for page in (oidc, cas):
        deadline = time.monotonic() + LOGOUT_SECONDS
        while True:
            page.reload()
            if page.locator("#signed-out").count() or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        expect(page.locator("#signed-out")).to_be_visible()
