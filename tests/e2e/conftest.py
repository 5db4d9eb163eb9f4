"""Real-browser tests: Debian's Chromium driven by Playwright against a gateway and a signing agent
started here on free ports, with SoftHSM tokens whose certificates come from the test PKI.

- The gateway is the real app served by waitress in this process, with a fixed clock at
  ``PKI_VALIDATION_TIME`` (the test PKI's certificates and CRLs are valid then), the test PKI as
  its trust anchor (hard-fail revocation, CRL files) and ``AGENT_URL`` pointing at the agent.
- The agent is ``certgate agent serve`` in a child process with the session's ``SOFTHSM2_CONF``,
  allowing the gateway's origin only.
- Chromium is ``/usr/bin/chromium`` (no browser download). Every page records console errors and
  uncaught exceptions; a test fails if any appear, except the "Failed to load resource" entries a
  test declares for API answers it provokes on purpose (a wrong PIN answers 401: Chromium logs
  that as a console error of the network, not of the page's script).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from flask import Flask

from gateway import create_app
from gateway.accounts import get_accounts
from gateway.clock import FixedClock
from softhsm.pki import TestPki, random_id_card_number, random_uscc
from tests.fixtures_pki import PKI_EPOCH, PKI_VALIDATION_TIME, free_port
from tests.fixtures_softhsm import MakeSoftHsmToken, SoftHsmCredential
from tests.gateway.conftest import DATA_KEY, close_app, pki_anchor_config
from tests.gateway.serving import serving
from tokens.pkcs11 import SOFTHSM_MODULE

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
PASSWORD = "e2e-password-2026"
ENTERPRISE_NAME = "示例建设工程有限公司"
ENTERPRISE_LOGIN = "demo-enterprise"
AGENT_START_SECONDS = 30
EXPECT_TIMEOUT_MS = 15_000

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)", allow_module_level=True)


@dataclass(frozen=True)
class E2eTokens:
    enterprise: SoftHsmCredential
    enterprise_uscc: str
    revoked: SoftHsmCredential
    revoked_id_number: str
    removable: SoftHsmCredential
    removable_id_number: str
    unbound: SoftHsmCredential  # a valid certificate that maps to no account


@dataclass(frozen=True)
class Stack:
    url: str
    agent_url: str
    app: Flask
    tokens: E2eTokens
    pin_counter: bool  # the agent's tokens count wrong PINs, as USB keys do


# SoftHSM never counts wrong PINs; the tokens tests' PKCS#11 module in front of it does (3 tries,
# reported through the token flags, reset by a right PIN). Read from tests/tokens, not copied.
PIN_LOCKOUT_SOURCE = Path(__file__).parent.parent / "tokens" / "pin_lockout_module.c"
PKCS11_HEADERS = Path("/usr/include/p11-kit-1")


def _pin_counting_module(directory: Path) -> tuple[str, dict[str, str]] | None:
    """The PIN-counting module in front of a private copy of libsofthsm2, and the environment
    it needs; None without a compiler, the PKCS#11 headers or the source."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    headers = PKCS11_HEADERS / "p11-kit" / "pkcs11.h"
    if compiler is None or not headers.is_file() or not PIN_LOCKOUT_SOURCE.is_file():
        return None
    module = directory / "pin_lockout.so"
    target = directory / "libsofthsm2-copy.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", f"-I{PKCS11_HEADERS}", str(PIN_LOCKOUT_SOURCE), "-o",
         str(module), "-ldl"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    shutil.copyfile(SOFTHSM_MODULE, target)
    return str(module), {"PIN_LOCKOUT_TARGET": str(target), "PIN_LOCKOUT_TRIES": "3"}


def _thumbprint(credential: SoftHsmCredential) -> str:
    return credential.provisioned.certificate.fingerprint(hashes.SHA256()).hex()


@pytest.fixture(scope="session")
def e2e_tokens(make_softhsm_token: MakeSoftHsmToken, test_pki: TestPki) -> E2eTokens:
    """Four USB keys: an enterprise (RSA), a person whose certificate is revoked (P-256), a
    person whose key the removal test pulls out, and a person with no account. Revocation happens
    before the gateway starts, which reads the CRL files at start-up."""
    uscc, revoked_number, removable_number = (
        random_uscc(),
        random_id_card_number(),
        random_id_card_number(),
    )
    enterprise = make_softhsm_token(kind="enterprise", name=ENTERPRISE_NAME, uscc=uscc)
    revoked = make_softhsm_token(
        kind="person", name="王五", id_number=revoked_number, key="p256", ca="p256"
    )
    test_pki.revoke(
        revoked.provisioned.certificate.serial_number,
        reason="key_compromise",
        at=PKI_EPOCH + timedelta(hours=12),
    )
    removable = make_softhsm_token(
        kind="person", name="李四", id_number=removable_number, key="p256", ca="p256"
    )
    unbound = make_softhsm_token(kind="person", name="周八", id_number=random_id_card_number())
    return E2eTokens(
        enterprise, uscc, revoked, revoked_number, removable, removable_number, unbound
    )


def _wait_for_agent(agent_url: str, origin: str, process: subprocess.Popen[bytes]) -> None:
    request = urllib.request.Request(f"{agent_url}/v1/certificates", headers={"Origin": origin})
    deadline = time.monotonic() + AGENT_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the agent exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                json.load(response)
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError("the agent did not answer in time")


def _gateway_app(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki, tokens: E2eTokens, url: str
) -> tuple[Flask, str]:
    """The gateway app (fixed clock, the test PKI trusted) with the demo accounts. SMS and
    e-mail go to a development outbox next to the database (``outbox_messages``), where the
    tests read verification codes as a person reads their phone."""
    agent_url = f"http://127.0.0.1:{free_port()}"
    clock = FixedClock(PKI_VALIDATION_TIME)
    directory = tmp_path_factory.mktemp("e2e")
    outbox = f"outbox:{directory / 'outbox.jsonl'}"
    app = create_app(
        {
            "CONFIG_FILE": None,
            "DATABASE_URL": f"sqlite:///{directory / 'gateway.sqlite3'}",
            "NOTIFY_SMS": outbox,
            "NOTIFY_EMAIL": outbox,
            "PUBLIC_ORIGIN": url,
            "DATA_KEY": DATA_KEY,
            "CLOCK": clock,
            "TRUST_ANCHORS": [pki_anchor_config(test_pki)],
            "AGENT_URL": agent_url,
            "PASSWORD_MEMORY_COST": 1024,
            "PASSWORD_TIME_COST": 1,
            # The clock stands still, so the limits' windows never slide during the session.
            "ADDRESS_ATTEMPT_LIMIT": 1000,
            "ACCOUNT_ATTEMPT_LIMIT": 1000,
            "CHALLENGE_LIMIT": 1000,
            "CODE_ADDRESS_LIMIT": 1000,
            "CODE_DAILY_LIMIT": 1000,
        }
    )
    accounts = get_accounts(app)
    enterprise = accounts.create_enterprise(
        unified_social_credit_code=tokens.enterprise_uscc,
        name=ENTERPRISE_NAME,
        legal_representative="赵六",
        login_name=ENTERPRISE_LOGIN,
        password=PASSWORD,
        at=clock.now(),
    )
    accounts.bind(
        enterprise.id, "sha256", _thumbprint(tokens.enterprise), at=clock.now(), label="USB key"
    )
    for name, number in (("王五", tokens.revoked_id_number), ("李四", tokens.removable_id_number)):
        accounts.create_person(real_name=name, id_card_number=number, at=clock.now())
    return app, agent_url


def _start_agent(
    origin: str, agent_url: str, module: str, environment: dict[str, str]
) -> subprocess.Popen[bytes]:
    """``certgate agent serve`` for SoftHSM (the session's SOFTHSM2_CONF), allowing ``origin``."""
    certgate = Path(sys.executable).with_name("certgate")
    command = [str(certgate)] if certgate.exists() else [shutil.which("certgate") or "certgate"]
    port = agent_url.rsplit(":", 1)[1]
    return subprocess.Popen(
        [
            *command,
            *("agent", "serve", "--module", module, "--allow-origin", origin),
            *("--port", port, "--no-pcsc"),
        ],
        env={**os.environ, **environment},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki, e2e_tokens: E2eTokens
) -> Iterator[Stack]:
    agent: subprocess.Popen[bytes] | None = None
    app: Flask | None = None
    try:
        with serving(threads=8) as served:
            try:
                app, agent_url = _gateway_app(tmp_path_factory, test_pki, e2e_tokens, served.url)
                served.app = app
                served.start()
                counting = _pin_counting_module(tmp_path_factory.mktemp("pin-counter"))
                module, environment = counting or (SOFTHSM_MODULE, {})
                agent = _start_agent(served.url, agent_url, module, environment)
                _wait_for_agent(agent_url, served.url, agent)
                counted = counting is not None
                yield Stack(served.url, agent_url, app, e2e_tokens, pin_counter=counted)
            finally:
                if agent is not None:
                    stop_process(agent)
    finally:
        if app is not None:
            close_app(app)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def outbox_messages(app: Flask) -> list[dict[str, Any]]:
    """What the gateway has "sent" by SMS and e-mail (its development outbox), oldest first."""
    path = Path(str(app.config["NOTIFY_SMS"]).removeprefix("outbox:"))
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    playwright_sync.expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with playwright_sync.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class ConsoleWatch:
    """Console errors and uncaught exceptions of a page; expected API failures allowed."""

    errors: list[str] = field(default_factory=list)

    allowed: list[tuple[str, str]] = field(default_factory=list)

    def allow(self, status: int | str, path: str) -> None:
        """Allow Chromium's "Failed to load resource: ... status of STATUS" (or, for a string,
        "Failed to load resource: net::ERR_...") for URLs ending in ``path``: a failure the test
        provokes on purpose."""
        self.allowed.append((f"status of {status} " if isinstance(status, int) else status, path))

    def record(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        location = (message.location or {}).get("url", "")
        for expected, path in self.allowed:
            if expected in text and location.split("?")[0].endswith(path):
                return
        self.errors.append(f"{text} ({location})")


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


@pytest.fixture
def page(
    browser: Any, stack: Stack, console: ConsoleWatch, request: pytest.FixtureRequest
) -> Iterator[Any]:
    viewport = getattr(request, "param", None) or {"width": 1100, "height": 900}
    context = browser.new_context(base_url=stack.url, viewport=viewport)
    page = context.new_page()
    page.on("console", console.record)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    try:
        yield page
    finally:
        context.close()
    assert console.errors == [], "the browser logged errors"


def scripts_ready(page: Any, which: str) -> None:
    """Wait until the page's module script has attached its handlers (``login``, ``account``):
    module scripts run after the document is parsed, so a fast click could come first."""
    playwright_sync.expect(page.locator(f'html[data-ready="{which}"]')).to_have_count(1)


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
