"""QR-code login in Chromium: a desktop browser and a phone (two browser contexts, each its own
cookies). Scan → the desktop shows "已扫码" → confirm → the desktop is signed in; cancel; expiry and
a new code; and a third browser that saw only the QR code (and even the ticket) gets nothing."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import (
    ENTERPRISE_LOGIN,
    ENTERPRISE_NAME,
    PASSWORD,
    ConsoleWatch,
    Stack,
    playwright_sync,
    screenshot,
    scripts_ready,
)

expect = playwright_sync.expect
PHONE = {"width": 390, "height": 844}


def _page(context: Any, watch: ConsoleWatch) -> Any:
    page = context.new_page()
    page.on("console", watch.record)
    page.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))
    return page


def _signed_in_phone(browser: Any, stack: Stack, watch: ConsoleWatch) -> Any:
    context = browser.new_context(
        base_url=stack.url, viewport=PHONE, is_mobile=True, has_touch=True
    )
    phone = _page(context, watch)
    watch.allow(401, "/api/v1/session")  # not signed in yet: the app shows its login
    phone.goto("/m/")
    expect(phone.locator("#mobile-signin")).to_be_visible()
    phone.fill("#identifier", ENTERPRISE_LOGIN)
    phone.fill("#password", PASSWORD)
    phone.check("#consent")
    phone.click("#mobile-password-submit")
    expect(phone.locator("#mobile-scan")).to_be_visible()
    return phone


def _desktop_qr(browser: Any, stack: Stack, watch: ConsoleWatch) -> tuple[Any, Any, dict[str, Any]]:
    context = browser.new_context(base_url=stack.url, viewport={"width": 1100, "height": 900})
    desktop = _page(context, watch)
    desktop.goto("/login")
    scripts_ready(desktop, "login")
    desktop.check("#consent")
    with desktop.expect_response(lambda r: r.url.endswith("/api/v1/login/qr")) as created:
        desktop.click("#tab-qr")
    expect(desktop.locator("#qr-state")).to_have_text("请使用手机应用扫描二维码")
    expect(desktop.locator("#qr-image")).to_be_visible()
    return context, desktop, created.value.json()


def _scan(phone: Any, payload: str) -> None:
    expect(phone.locator("#mobile-scan")).to_be_visible()
    phone.fill("#scan-payload", payload)
    phone.click("#scan-submit")
    expect(phone.locator("#mobile-confirm")).to_be_visible()


def test_scan_confirm_signs_in_the_desktop_only(browser: Any, stack: Stack) -> None:
    watch = ConsoleWatch()
    phone = _signed_in_phone(browser, stack, watch)
    context, desktop, ticket = _desktop_qr(browser, stack, watch)
    payload = desktop.locator("#qr-image").get_attribute("data-payload")
    assert payload == ticket["qr_payload"]

    # Someone who saw the QR code (and even learnt the ticket) opens it: not signed in, the
    # app asks for a login; the ticket's state is not theirs to hear.
    onlooker = browser.new_context(base_url=stack.url)
    onlooker_page = _page(onlooker, watch)
    onlooker_page.goto(payload)
    expect(onlooker_page.locator("#mobile-signin")).to_be_visible()
    assert onlooker.request.get(f"/api/v1/login/qr/{ticket['ticket']}").status == 404

    _scan(phone, payload)
    expect(phone.locator("#confirm-site")).to_have_text(stack.url)
    expect(phone.locator("#confirm-address")).to_have_text("127.0.0.1")
    expect(phone.locator("#confirm-browser")).to_contain_text("Chrome")
    expect(phone.locator("#confirm-time")).not_to_be_empty()
    expect(desktop.locator("#qr-state")).to_have_text("已扫码，请在手机上确认登录")
    screenshot(phone, "qr-phone-confirm")
    screenshot(desktop, "qr-desktop-scanned")

    phone.click("#confirm-login")
    expect(phone.locator("#mobile-done-text")).to_have_text("已确认，电脑上已登录。")
    expect(desktop).to_have_url(f"{stack.url}/account")
    session = context.request.get("/api/v1/session").json()
    assert session["amr"] == ["mca"] and session["acr"] == "urn:certgate:loa:1"
    assert session["account"]["display_name"] == ENTERPRISE_NAME

    answer = onlooker.request.get(f"/api/v1/login/qr/{ticket['ticket']}")
    assert answer.status == 404 and answer.json()["error"] == "qr_ticket_unknown"
    assert onlooker.request.get("/api/v1/session").status == 401
    for other in (context, onlooker, phone.context):
        other.close()
    assert watch.errors == []


def test_cancel_and_expiry_on_the_desktop(browser: Any, stack: Stack) -> None:
    watch = ConsoleWatch()
    phone = _signed_in_phone(browser, stack, watch)
    context, desktop, ticket = _desktop_qr(browser, stack, watch)
    _scan(phone, ticket["qr_payload"])
    expect(desktop.locator("#qr-state")).to_have_text("已扫码，请在手机上确认登录")
    phone.click("#cancel-login")
    expect(phone.locator("#mobile-done-text")).to_have_text("已取消，电脑不会登录。")
    expect(desktop.locator("#qr-state")).to_have_text("已在手机上取消登录")
    expect(desktop.locator("#qr-refresh")).to_be_visible()
    assert context.request.get("/api/v1/session").status == 401

    # A new code, left until it expires (the gateway's clock is moved past qr_ttl).
    with desktop.expect_response(lambda r: r.url.endswith("/api/v1/login/qr")) as renewed:
        desktop.click("#qr-refresh")
    fresh = renewed.value.json()
    assert fresh["qr_payload"] != ticket["qr_payload"]
    expect(desktop.locator("#qr-state")).to_have_text("请使用手机应用扫描二维码")
    stack.app.extensions["certgate.clock"].advance(stack.app.config["QR_TTL"] + 1)
    expect(desktop.locator("#qr-state")).to_have_text("二维码已过期，请刷新")
    expect(desktop.locator("#qr-refresh")).to_be_visible()
    screenshot(desktop, "qr-desktop-expired")
    phone.click("#scan-again")
    phone.fill("#scan-payload", fresh["qr_payload"])
    watch.allow(410, "/api/v1/mobile/qr/scan")  # before the click: the answer may come first
    phone.click("#scan-submit")
    expect(phone.locator("#mobile-error")).to_contain_text("二维码已过期")
    assert context.request.get("/api/v1/session").status == 401
    context.close()
    phone.context.close()
    assert watch.errors == []
