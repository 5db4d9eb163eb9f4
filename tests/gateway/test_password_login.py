"""Password login, sessions, CSRF, limits and lockout through HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from certs.identifiers import is_valid_uscc
from gateway.accounts import AccountService, get_accounts
from gateway.clock import FixedClock
from gateway.limits import get_guard
from softhsm.pki import random_id_card_number
from tests.gateway.conftest import ORIGIN, PASSWORD, TRUSTED_PROXY, post_json

ID_NUMBER = "11010519491231002X"
PHONE = "13800138000"
USCC = "91110000600037341L"


@pytest.fixture
def person(accounts: AccountService, clock: FixedClock) -> Any:
    return accounts.create_person(
        real_name="张三",
        id_card_number=ID_NUMBER,
        at=clock.now(),
        login_name="zhangsan",
        phone=PHONE,
        email="zs@example.cn",
        password=PASSWORD,
    )


@pytest.fixture
def enterprise(accounts: AccountService, clock: FixedClock) -> Any:
    return accounts.create_enterprise(
        unified_social_credit_code=USCC,
        name="示例科技有限公司",
        at=clock.now(),
        legal_representative="李四",
        password=PASSWORD,
    )


def login(client: FlaskClient, identifier: str, password: str = PASSWORD, **headers: str) -> Any:
    return post_json(
        client,
        "/api/v1/login/password",
        {"identifier": identifier, "password": password},
        **headers,
    )


@pytest.mark.parametrize(
    "identifier", ["zhangsan", "ZhangSan", ID_NUMBER, ID_NUMBER.lower(), PHONE, "+86 138-0013-8000"]
)
def test_person_signs_in_with_each_identifier(
    client: FlaskClient, person: Any, identifier: str
) -> None:
    response = login(client, identifier)
    assert response.status_code == 200, response.json
    assert response.json["ok"] is True
    assert response.json["account"] == {"id": person.id, "kind": "person", "display_name": "张三"}
    assert response.json["amr"] == ["pwd"]


def _id_card_number_that_is_also_a_credit_code() -> str:
    # About one ID-card number in 31 also passes the credit code's checksum.
    while True:
        number = random_id_card_number()
        if is_valid_uscc(number):
            return number


def test_an_id_card_number_that_reads_as_a_credit_code_too_still_signs_in(
    client: FlaskClient, accounts: AccountService, clock: FixedClock
) -> None:
    number = _id_card_number_that_is_also_a_credit_code()
    made = accounts.create_person(
        real_name="赵六", id_card_number=number, at=clock.now(), password=PASSWORD
    )
    response = login(client, number)
    assert response.status_code == 200, response.json
    assert response.json["account"]["id"] == made.id


def test_a_string_naming_two_accounts_signs_in_to_neither(
    client: FlaskClient, accounts: AccountService, clock: FixedClock
) -> None:
    number = _id_card_number_that_is_also_a_credit_code()
    accounts.create_person(
        real_name="赵六", id_card_number=number, at=clock.now(), password=PASSWORD
    )
    accounts.create_enterprise(
        unified_social_credit_code=number, name="双读有限公司", at=clock.now(), password=PASSWORD
    )
    response = login(client, number)
    assert (response.status_code, response.json["error"]) == (401, "credentials_invalid")


def test_enterprise_signs_in_with_credit_code(client: FlaskClient, enterprise: Any) -> None:
    response = login(client, USCC)
    assert response.status_code == 200
    assert response.json["account"]["uscc"] == USCC
    assert response.json["account"]["kind"] == "enterprise"


def test_session_cookie_flags_and_session_route(client: FlaskClient, person: Any) -> None:
    response = login(client, "zhangsan")
    cookie = next(
        c
        for c in response.headers.getlist("Set-Cookie")
        if c.startswith("__Host-certgate_session=")
    )
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    session = client.get("/api/v1/session")
    assert session.status_code == 200
    assert session.json["account"]["id"] == person.id
    assert session.json["amr"] == ["pwd"]
    assert session.headers["Cache-Control"] == "no-store"


def test_session_is_rotated_at_login(client: FlaskClient, person: Any) -> None:
    login(client, "zhangsan")
    first = client.get_cookie("__Host-certgate_session")
    assert first is not None
    login(client, "zhangsan")
    second = client.get_cookie("__Host-certgate_session")
    assert second is not None and second.value != first.value
    # The old cookie no longer works.
    other = client.application.test_client()
    other.set_cookie("__Host-certgate_session", first.value)
    assert other.get("/api/v1/session").json["error"] == "credentials_invalid"


def test_idle_and_absolute_timeouts(
    client: FlaskClient, person: Any, clock: FixedClock, app: Flask
) -> None:
    idle = app.config["SESSION_IDLE_TIMEOUT"]
    login(client, "zhangsan")
    clock.advance(idle - 1)
    assert client.get("/api/v1/session").status_code == 200  # touches the idle timer
    clock.advance(idle - 1)
    assert client.get("/api/v1/session").status_code == 200
    clock.advance(idle)
    response = client.get("/api/v1/session")
    assert response.status_code == 401 and response.json["error"] == "credentials_invalid"

    login(client, "zhangsan")
    for _ in range(app.config["SESSION_ABSOLUTE_TIMEOUT"] // (idle - 1) + 1):
        clock.advance(idle - 1)
        client.get("/api/v1/session")
    assert client.get("/api/v1/session").status_code == 401


def test_logout_needs_csrf_token(client: FlaskClient, person: Any) -> None:
    token = login(client, "zhangsan").json["csrf_token"]
    refused = client.post("/api/v1/logout", headers={"Origin": ORIGIN})
    assert refused.status_code == 400 and refused.json["error"] == "bad_request"
    wrong = client.post("/api/v1/logout", headers={"Origin": ORIGIN, "X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 400
    assert client.get("/api/v1/session").status_code == 200
    done = client.post("/api/v1/logout", headers={"Origin": ORIGIN, "X-CSRF-Token": token})
    assert done.status_code == 200 and done.json == {"ok": True}
    assert client.get("/api/v1/session").status_code == 401


def test_logout_everywhere(app: Flask, person: Any) -> None:
    laptop, phone = app.test_client(), app.test_client()
    token = login(laptop, "zhangsan").json["csrf_token"]
    login(phone, "zhangsan")
    assert phone.get("/api/v1/session").status_code == 200
    response = laptop.post(
        "/api/v1/logout",
        json={"everywhere": True},
        headers={"Origin": ORIGIN, "X-CSRF-Token": token},
    )
    assert response.status_code == 200
    assert phone.get("/api/v1/session").status_code == 401
    assert laptop.get("/api/v1/session").status_code == 401


def test_logout_from_another_origin_is_refused(client: FlaskClient, person: Any) -> None:
    token = login(client, "zhangsan").json["csrf_token"]
    response = client.post(
        "/api/v1/logout", headers={"Origin": "https://evil.example", "X-CSRF-Token": token}
    )
    assert response.status_code == 401 and response.json["error"] == "origin_mismatch"
    assert client.get("/api/v1/session").status_code == 200


@pytest.mark.parametrize(
    ("identifier", "password"),
    [
        ("zhangsan", "wrong password"),
        ("nobody", PASSWORD),
        (ID_NUMBER, "wrong password"),
        ("11010519491231002Y", PASSWORD),
    ],
)
def test_credentials_invalid(
    client: FlaskClient, person: Any, identifier: str, password: str
) -> None:
    response = login(client, identifier, password)
    assert response.status_code == 401
    assert response.json == {
        "ok": False,
        "error": "credentials_invalid",
        "message": "账号或密码错误。",
    }


def test_english_messages(client: FlaskClient, person: Any) -> None:
    response = login(client, "zhangsan", "wrong password", **{"Accept-Language": "en-US,en;q=0.9"})
    assert response.json["message"] == "The account or password is incorrect."
    response = login(
        client, "zhangsan", "wrong password", **{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
    )
    assert response.json["message"] == "账号或密码错误。"


@pytest.mark.parametrize("status", ["frozen", "suspended", "terminated"])
def test_a_disabled_account_does_not_confirm_its_password(
    client: FlaskClient, person: Any, accounts: AccountService, clock: FixedClock, status: str
) -> None:
    # The right password answers like a wrong one: only a certificate login, which proves
    # possession of the key, is told the account's state (account_disabled).
    accounts.set_status(person.id, status, at=clock.now())
    response = login(client, "zhangsan")
    assert response.status_code == 401 and response.json["error"] == "credentials_invalid"
    assert response.json == login(client, "zhangsan", "wrong password").json


def test_frozen_account_loses_its_session(
    client: FlaskClient, person: Any, accounts: AccountService, clock: FixedClock
) -> None:
    login(client, "zhangsan")
    accounts.set_status(person.id, "frozen", at=clock.now())
    assert client.get("/api/v1/session").status_code == 401


def test_rate_limited_then_locked(
    app: Flask, client: FlaskClient, person: Any, clock: FixedClock
) -> None:
    limit = app.config["ACCOUNT_ATTEMPT_LIMIT"]
    threshold = app.config["LOCKOUT_THRESHOLD"]
    codes = []
    for _ in range(threshold + 2):
        codes.append(login(client, "zhangsan", "wrong password").json["error"])
        if codes[-1] == "rate_limited":
            clock.advance(app.config["RATE_LIMIT_WINDOW"])
    assert codes[:limit] == ["credentials_invalid"] * limit
    assert codes[limit] == "rate_limited"
    assert "account_locked" in codes
    locked = login(client, "zhangsan")  # even the right password
    assert locked.status_code == 403 and locked.json["error"] == "account_locked"
    assert locked.json["method"] == "password" and "北京时间" in locked.json["message"]
    clock.advance(app.config["LOCKOUT_DURATION"] + 1)
    assert login(client, "zhangsan").status_code == 200


def test_rate_limited_has_retry_after(client: FlaskClient, person: Any, app: Flask) -> None:
    for _ in range(app.config["ACCOUNT_ATTEMPT_LIMIT"]):
        login(client, "nobody", "wrong password")
    response = login(client, "nobody", "wrong password")
    assert response.status_code == 429 and response.json["error"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def test_per_address_limit(make_app: Any, person: Any) -> None:
    app = make_app(ADDRESS_ATTEMPT_LIMIT=3)
    client = app.test_client()
    for n in range(3):
        assert login(client, f"nobody{n}", "x" * 10).json["error"] == "credentials_invalid"
    assert login(client, "nobody9", "x" * 10).status_code == 429
    # Another client address is not limited.
    other = app.test_client()
    response = other.post(
        "/api/v1/login/password",
        json={"identifier": "nobody", "password": "x" * 10},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert response.json["error"] == "credentials_invalid"


def test_forwarded_for_is_trusted_only_from_proxies(make_app: Any) -> None:
    app = make_app(ADDRESS_ATTEMPT_LIMIT=2)
    client = app.test_client()

    typed = iter(range(100))

    def attempt(peer: str, forwarded: str) -> int:
        return client.post(
            "/api/v1/login/password",
            json={"identifier": f"nobody{next(typed)}", "password": "x" * 10},
            headers={"X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": peer},
        ).status_code

    # A client cannot dodge the address limit by inventing X-Forwarded-For.
    assert [attempt("192.0.2.1", f"198.51.100.{n}") for n in range(3)] == [401, 401, 429]
    # Behind the trusted proxy, each forwarded client has its own budget.
    assert [attempt(TRUSTED_PROXY, f"198.51.100.{n}") for n in range(3)] == [401, 401, 401]
    # A client-supplied hop left of the proxy's is ignored: the proxy's own entry counts.
    assert [attempt(TRUSTED_PROXY, f"203.0.113.{n}, 198.51.100.9") for n in range(3)] == [
        401,
        401,
        429,
    ]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400),
        ({"data": "[1, 2]", "content_type": "application/json"}, 400),
        ({"json": {"identifier": 5, "password": PASSWORD}}, 400),
        ({"json": {"identifier": "zhangsan", "password": ["x"]}}, 400),
        ({"json": {"identifier": "zhangsan"}}, 400),
        ({"json": {"identifier": "a" * 65, "password": PASSWORD}}, 400),
        ({"json": {"identifier": "", "password": PASSWORD}}, 400),
        (
            {
                "data": "identifier=zhangsan&password=x",
                "content_type": "application/x-www-form-urlencoded",
            },
            400,
        ),
        ({"data": "\xff\xfe", "content_type": "application/json"}, 400),
        ({"json": {"identifier": "zhangsan", "password": "x" * 200_000}}, 413),
    ],
)
def test_bad_request(client: FlaskClient, person: Any, kwargs: dict[str, Any], status: int) -> None:
    response = client.post("/api/v1/login/password", headers={"Origin": ORIGIN}, **kwargs)
    assert response.status_code == status
    assert response.json["ok"] is False and response.json["error"] == "bad_request"
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_route_and_method_answer_json(client: FlaskClient) -> None:
    assert client.get("/api/v1/nothing").json["error"] == "bad_request"
    response = client.get("/api/v1/login/password")
    assert response.status_code == 405 and response.json["error"] == "bad_request"


def test_login_from_another_origin(client: FlaskClient, person: Any) -> None:
    response = login(client, "zhangsan", **{"Origin": "https://evil.example"})
    assert response.status_code == 401 and response.json["error"] == "origin_mismatch"


def test_unexpected_error_is_unavailable_without_traceback(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, person: Any
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(type(app.extensions["certgate.accounts"]), "find_by_identifier", broken)
    app.logger.disabled = True
    response = login(client, "zhangsan")
    assert response.status_code == 503 and response.json["error"] == "unavailable"
    assert "fire" not in response.get_data(as_text=True)


def test_session_without_login(client: FlaskClient) -> None:
    response = client.get("/api/v1/session")
    assert response.status_code == 401 and response.json["error"] == "credentials_invalid"


def test_password_attempt_times_are_not_read_from_the_wall_clock(
    client: FlaskClient, person: Any, clock: FixedClock
) -> None:
    clock.advance(timedelta(days=400).total_seconds())
    assert login(client, "zhangsan").status_code == 200


@pytest.mark.parametrize("state_store", ["database", "memory"])
def test_housekeeping_purges_expired_state(
    make_app: Callable[..., Flask], clock: FixedClock, state_store: str
) -> None:
    from sqlalchemy import text

    from gateway.login import CHALLENGE_STORE

    app = make_app(STATE_STORE=state_store)
    get_accounts(app).create_person(
        real_name="张三",
        id_card_number=ID_NUMBER,
        at=clock.now(),
        login_name="zhangsan",
        password=PASSWORD,
    )
    client = app.test_client()
    post_json(client, "/api/v1/login/challenge", None)
    login(client, "zhangsan", "wrong password")
    login(client, "zhangsan")
    clock.advance(app.config["SESSION_ABSOLUTE_TIMEOUT"] + 1)
    post_json(client, "/api/v1/login/challenge", None)  # runs the purge
    with app.extensions["certgate.database"].engine.connect() as connection:
        counts = {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("challenges", "sessions", "attempt_counters")
        }
    # What is left is the new challenge and its count against the address.
    if state_store == "database":
        assert counts == {"challenges": 1, "sessions": 0, "attempt_counters": 1}
    else:
        assert counts == {"challenges": 0, "sessions": 0, "attempt_counters": 0}
        assert len(app.extensions[CHALLENGE_STORE]) == 1
        assert len(get_guard(app).store) == 1  # type: ignore[arg-type]


def test_cancelled_account_is_gone(
    client: FlaskClient, person: Any, accounts: AccountService, clock: FixedClock
) -> None:
    login(client, "zhangsan")
    accounts.cancel(person.id, at=clock.now())
    assert client.get("/api/v1/session").status_code == 401
    for identifier in ("zhangsan", ID_NUMBER, PHONE):
        assert login(client, identifier).json["error"] == "credentials_invalid"


def test_after_a_lockout_the_count_starts_again(make_app: Any, clock: FixedClock) -> None:
    app = make_app(ACCOUNT_ATTEMPT_LIMIT=100, LOCKOUT_THRESHOLD=3)
    get_accounts(app).create_person(
        real_name="张三",
        id_card_number=ID_NUMBER,
        login_name="zhangsan",
        password=PASSWORD,
        at=clock.now(),
    )
    client = app.test_client()
    codes = [login(client, "zhangsan", "wrong password").json["error"] for _ in range(3)]
    assert codes == ["credentials_invalid", "credentials_invalid", "account_locked"]
    clock.advance(app.config["LOCKOUT_DURATION"] + 1)
    assert login(client, "zhangsan", "wrong password").json["error"] == "credentials_invalid"
    assert login(client, "zhangsan").status_code == 200


def test_challenges_are_rate_limited_per_address(make_app: Any) -> None:
    app = make_app(CHALLENGE_LIMIT=3)
    client = app.test_client()
    statuses = [post_json(client, "/api/v1/login/challenge", None).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_a_session_in_use_outlives_its_idle_timeout_though_its_timer_is_written_sparingly(
    client: FlaskClient, person: Any, clock: FixedClock, app: Flask
) -> None:
    """The idle timer is written at most every min(idle / 20, 30 s): requests a few seconds
    apart keep the session alive past the idle timeout, and after a full idle period without
    a request it ends."""
    idle = app.config["SESSION_IDLE_TIMEOUT"]
    step = max(1, idle // 40)
    login(client, "zhangsan")
    for _ in range(3 * idle // step):
        clock.advance(step)
        assert client.get("/api/v1/session").status_code == 200
    clock.advance(idle)
    assert client.get("/api/v1/session").status_code == 401
