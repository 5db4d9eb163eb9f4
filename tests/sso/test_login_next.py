"""The login page continues to ``next`` after any successful login, and only to a path on this
origin (no open redirect)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from gateway.web import safe_next
from tests.gateway.conftest import PASSWORD, post_json


@pytest.mark.parametrize(
    "value",
    [
        "//evil.example.com/",
        "/\\evil.example.com/",
        "/\\/evil.example.com/",
        "https://evil.example.com/",
        "javascript:alert(1)",
        "evil.example.com",
        "/%0d%0a//evil".replace("%0d%0a", "\r\n"),
        "/ok\tpath",
        "",
        "/" + "a" * 5000,
    ],
)
def test_next_outside_this_origin_is_ignored(client: FlaskClient, value: str) -> None:
    assert safe_next(value) is None
    page = client.get("/login", query_string={"next": value})
    assert page.status_code == 200
    assert 'data-next=""' in page.text and 'id="next-notice"' not in page.text


def test_a_relative_next_is_put_on_the_page_even_for_a_signed_in_person(
    client: FlaskClient, accounts: object, clock: object
) -> None:
    target = "/oauth/authorize?client_id=x&redirect_uri=https%3A%2F%2Fa.cn%2Fcb"
    assert safe_next(target) == target
    page = client.get("/login", query_string={"next": target, "acr": "urn:certgate:loa:4"})
    assert 'data-next="/oauth/authorize?client_id=x&amp;redirect_uri=' in page.text
    assert "USB Key" in page.text or "USB key" in page.text
    from gateway.accounts import AccountService
    from softhsm.pki import random_id_card_number

    assert isinstance(accounts, AccountService)
    accounts.create_person(
        real_name="张三",
        id_card_number=random_id_card_number(),
        login_name="zhangsan",
        password=PASSWORD,
        at=clock.now(),  # type: ignore[attr-defined]
    )
    signed_in = post_json(
        client, "/api/v1/login/password", {"identifier": "zhangsan", "password": PASSWORD}
    )
    assert signed_in.status_code == 200
    # Signed in: /login alone goes to the account page; with a next, the form is shown again
    # (an application asked for a fresh or stronger login).
    assert client.get("/login").status_code == 302
    again = client.get("/login", query_string={"next": target})
    assert again.status_code == 200 and 'id="next-notice"' in again.text


def test_the_login_script_goes_to_next_after_every_method() -> None:
    from gateway.web import WEB_ROOT

    script = (WEB_ROOT / "static" / "js" / "login.js").read_text(encoding="utf-8")
    # Password, USB key and TLS logins all end in signedIn(), which reads the page's next.
    assert script.count("await signedIn(") >= 2
    assert 'getElementById("login-card").dataset.next' in script
