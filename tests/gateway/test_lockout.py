"""Lockout and attempt limits across login methods: password failures lock passwords only, the
lock says which method and until when, unknown identifiers answer like known ones, counting is
exact under parallel requests, IPv6 clients are limited per /64, and the in-process counters
cannot be flushed by a flood of new keys."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.accounts import get_accounts
from gateway.clock import FixedClock
from gateway.limits import address_key
from gateway.storage.database import Database
from gateway.stores import AttemptStore, MemoryAttemptStore, SqlAttemptStore
from softhsm.pki import TestPki, random_uscc
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import ORIGIN, PASSWORD, TRUSTED_PROXY, pki_anchor_config, post_json
from tests.gateway.serving import serving
from tests.gateway.test_tls_login import nginx_headers
from tests.gateway.test_token_login import token_login

WRONG = "wrong password"


def password_login(client: FlaskClient, identifier: str, password: str = WRONG, **kw: Any) -> Any:
    return post_json(
        client, "/api/v1/login/password", {"identifier": identifier, "password": password}, **kw
    )


def fail_until_locked(app: Flask, client: FlaskClient, identifier: str, clock: FixedClock) -> list:
    """Wrong passwords until the lockout threshold is reached, waiting out each rate limit."""
    codes: list[str] = []
    while "account_locked" not in codes:
        codes.append(password_login(client, identifier).json["error"])
        if codes[-1] == "rate_limited":
            clock.advance(app.config["RATE_LIMIT_WINDOW"])
        assert len(codes) < 40, codes
    return codes


@pytest.fixture
def cert_app(make_app: Callable[..., Flask], test_pki: TestPki) -> Flask:
    return make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])


def enterprise(app: Flask, pki: TestPki, clock: FixedClock, *, password: str | None) -> Any:
    uscc = random_uscc()
    get_accounts(app).create_enterprise(
        unified_social_credit_code=uscc,
        name="示例建设工程有限公司",
        at=clock.now(),
        password=password,
    )
    return uscc, pki.issue("enterprise", "示例建设工程有限公司", uscc=uscc, at=PKI_EPOCH)


# --- one factor's failures do not lock out another ------------------------------------------------


@pytest.mark.parametrize("has_password", [True, False], ids=["with-password", "no-password"])
def test_wrong_passwords_on_a_uscc_do_not_lock_out_the_usb_key(
    cert_app: Flask, test_pki: TestPki, clock: FixedClock, has_password: bool
) -> None:
    uscc, issued = enterprise(
        cert_app, test_pki, clock, password=PASSWORD if has_password else None
    )
    guesser = cert_app.test_client()
    codes = fail_until_locked(cert_app, guesser, uscc, clock)
    assert codes.count("credentials_invalid") == cert_app.config["LOCKOUT_THRESHOLD"] - 1
    # The key holder signs the challenge with the USB key: signed in.
    holder = cert_app.test_client()
    response = token_login(holder, issued, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert response.status_code == 200, response.json
    # So does the same certificate through the TLS-terminating proxy.
    response = cert_app.test_client().post(
        "/api/v1/login/tls",
        json={},
        headers={"Origin": ORIGIN, **nginx_headers(issued)},
        environ_base={"REMOTE_ADDR": TRUSTED_PROXY},
    )
    assert response.status_code == 200, response.json
    # The password stays locked, even the right one.
    if has_password:
        assert password_login(guesser, uscc, PASSWORD).json["error"] == "account_locked"


def test_throttled_passwords_do_not_throttle_the_usb_key(
    cert_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    uscc, issued = enterprise(cert_app, test_pki, clock, password=PASSWORD)
    guesser = cert_app.test_client()
    limit = cert_app.config["ACCOUNT_ATTEMPT_LIMIT"]
    codes = [password_login(guesser, uscc).json["error"] for _ in range(limit + 1)]
    assert codes[-1] == "rate_limited"
    holder = cert_app.test_client()
    for _ in range(limit + 1):  # more than the password budget, all within the same window
        response = token_login(holder, issued, environ_base={"REMOTE_ADDR": "192.0.2.9"})
        assert response.status_code == 200, response.json


def test_successful_logins_do_not_count_against_limits(
    make_app: Callable[..., Flask], clock: FixedClock
) -> None:
    app = make_app(ACCOUNT_ATTEMPT_LIMIT=3, ADDRESS_ATTEMPT_LIMIT=5)
    uscc = random_uscc()
    get_accounts(app).create_enterprise(
        unified_social_credit_code=uscc, name="示例公司", at=clock.now(), password=PASSWORD
    )
    client = app.test_client()
    for _ in range(8):
        assert password_login(client, uscc, PASSWORD).status_code == 200
    codes = [password_login(client, uscc).json["error"] for _ in range(4)]
    assert codes == ["credentials_invalid"] * 3 + ["rate_limited"]


def test_a_frozen_account_is_refused_by_the_usb_key_too(
    cert_app: Flask, test_pki: TestPki, clock: FixedClock
) -> None:
    uscc, issued = enterprise(cert_app, test_pki, clock, password=PASSWORD)
    get_accounts(cert_app).set_status(uscc, "frozen", at=clock.now())
    response = token_login(cert_app.test_client(), issued)
    assert response.status_code == 403 and response.json["error"] == "account_disabled"


# --- what the lock says -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("zh-CN", "密码登录失败次数过多，密码登录已锁定至 {until}（北京时间）"),
        (
            "en",
            "Too many failed password sign-ins; password sign-in is locked until {until} "
            "(China Standard Time)",
        ),
    ],
)
def test_the_lock_names_the_method_and_its_end(
    cert_app: Flask, test_pki: TestPki, clock: FixedClock, language: str, expected: str
) -> None:
    uscc, _ = enterprise(cert_app, test_pki, clock, password=PASSWORD)
    client = cert_app.test_client()
    fail_until_locked(cert_app, client, uscc, clock)
    response = password_login(client, uscc, PASSWORD, **{"Accept-Language": language})
    assert response.status_code == 403
    body = response.json
    assert body["error"] == "account_locked" and body["method"] == "password"
    until = datetime.fromisoformat(body["locked_until"].replace("Z", "+00:00"))
    assert until > clock.now()
    # The JSON's time is UTC; the message shows it as the pages do, in Beijing time.
    shown = until.astimezone(ZoneInfo("Asia/Shanghai"))
    assert expected.format(until=f"{shown:%Y-%m-%d %H:%M}") in body["message"]


# --- no oracle: unknown identifiers, frozen accounts --------------------------------------------


def answers(client: FlaskClient, identifier: str, app: Flask, clock: FixedClock) -> list[Any]:
    seen = []
    for _ in range(app.config["LOCKOUT_THRESHOLD"] + 3):
        response = password_login(client, identifier)
        body = dict(response.json)
        seen.append((response.status_code, body))
        if body["error"] == "rate_limited":
            clock.advance(app.config["RATE_LIMIT_WINDOW"])
    return seen


def test_an_unknown_identifier_is_limited_and_locked_like_a_known_one(
    make_app: Callable[..., Flask], clock: FixedClock
) -> None:
    app = make_app(ADDRESS_ATTEMPT_LIMIT=1000)
    known = random_uscc()
    get_accounts(app).create_enterprise(
        unified_social_credit_code=known, name="示例公司", at=clock.now(), password=PASSWORD
    )
    unknown = random_uscc()
    start = clock.now()
    seen_known = answers(app.test_client(), known, app, clock)
    clock.at = start  # the same moments for the second run, so the lock ends read the same
    seen_unknown = answers(app.test_client(), unknown, app, clock)
    assert seen_known == seen_unknown
    assert any(body["error"] == "account_locked" for _status, body in seen_unknown)


def test_a_frozen_account_does_not_tell_a_right_password_from_a_wrong_one(
    app: Flask, clock: FixedClock
) -> None:
    uscc = random_uscc()
    accounts = get_accounts(app)
    accounts.create_enterprise(
        unified_social_credit_code=uscc, name="示例公司", at=clock.now(), password=PASSWORD
    )
    accounts.set_status(uscc, "frozen", at=clock.now())
    right = password_login(app.test_client(), uscc, PASSWORD)
    wrong = password_login(app.test_client(), uscc, WRONG)
    assert (right.status_code, right.json) == (wrong.status_code, wrong.json)
    assert right.json["error"] == "credentials_invalid"


# --- exact counting under parallel requests ------------------------------------------------------


@pytest.mark.parametrize("state_store", ["memory", "database"])
def test_forty_parallel_wrong_passwords_are_counted_exactly(
    make_app: Callable[..., Flask], clock: FixedClock, state_store: str
) -> None:
    with serving(threads=8) as server:
        app = make_app(PUBLIC_ORIGIN=server.url, STATE_STORE=state_store)
        server.app = app
        server.start()
        uscc = random_uscc()
        get_accounts(app).create_enterprise(
            unified_social_credit_code=uscc, name="示例公司", at=clock.now(), password=PASSWORD
        )
        start = threading.Barrier(40)

        def attempt(_: int) -> str:
            request = urllib.request.Request(
                server.url + "/api/v1/login/password",
                data=json.dumps({"identifier": uscc, "password": WRONG}).encode(),
                headers={"Origin": server.url, "Content-Type": "application/json"},
            )
            start.wait()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return str(json.load(response)["error"])
            except urllib.error.HTTPError as refused:
                return str(json.load(refused)["error"])

        with ThreadPoolExecutor(max_workers=40) as pool:
            codes = list(pool.map(attempt, range(40)))
    limit = app.config["ACCOUNT_ATTEMPT_LIMIT"]
    assert codes.count("credentials_invalid") == limit, codes
    assert codes.count("rate_limited") == 40 - limit, codes


def stores(tmp_path: Path) -> list[tuple[AttemptStore, Database | None]]:
    database = Database(f"sqlite:///{tmp_path / 'attempts.sqlite3'}")
    database.migrate()
    return [(MemoryAttemptStore(), None), (SqlAttemptStore(database), database)]


def test_forty_parallel_admissions_admit_exactly_the_limit(
    tmp_path: Path, clock: FixedClock
) -> None:
    now = clock.now()
    for store, database in stores(tmp_path):
        start = threading.Barrier(40)

        def admit(_: int, store: AttemptStore = store, start: threading.Barrier = start) -> bool:
            start.wait()
            return store.admit("k", limit=5, window=timedelta(seconds=60), at=now).admitted

        with ThreadPoolExecutor(max_workers=40) as pool:
            admitted = list(pool.map(admit, range(40)))
        assert admitted.count(True) == 5, type(store).__name__
        if database is not None:
            database.close()


# --- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "address:192.0.2.7"),
        ("::ffff:192.0.2.7", "address:192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "address:2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "address:2001:db8:1:2::/64"),
        ("not an address", "address:not an address"),
    ],
)
def test_address_keys(address: str, key: str) -> None:
    assert address_key(address) == key


def test_ipv6_addresses_in_one_slash_64_share_a_limit(make_app: Callable[..., Flask]) -> None:
    app = make_app(ADDRESS_ATTEMPT_LIMIT=3)
    client = app.test_client()

    def attempt(peer: str, n: int) -> int:
        return int(
            client.post(
                "/api/v1/login/password",
                json={"identifier": f"nobody{n}", "password": WRONG},
                headers={"Origin": ORIGIN},
                environ_base={"REMOTE_ADDR": peer},
            ).status_code
        )

    peers = ["2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::9", "2001:db8:0:1::abcd"]
    assert [attempt(peer, n) for n, peer in enumerate(peers)] == [401, 401, 401, 429]
    assert attempt("2001:db8:0:2::1", 10) == 401  # the next /64 is another client


def test_ipv4_mapped_addresses_share_the_ipv4_limit(make_app: Callable[..., Flask]) -> None:
    app = make_app(ADDRESS_ATTEMPT_LIMIT=2)
    client = app.test_client()
    statuses = [
        client.post(
            "/api/v1/login/password",
            json={"identifier": f"nobody{n}", "password": WRONG},
            headers={"Origin": ORIGIN},
            environ_base={"REMOTE_ADDR": peer},
        ).status_code
        for n, peer in enumerate(["192.0.2.7", "::ffff:192.0.2.7", "192.0.2.7"])
    ]
    assert statuses == [401, 401, 429]


# --- bounded in-process counters ----------------------------------------------------------------


def test_a_flood_of_new_keys_does_not_evict_a_clients_count(clock: FixedClock) -> None:
    store = MemoryAttemptStore(max_keys=100)
    now = clock.now()
    window = timedelta(seconds=60)
    for _ in range(4):
        assert store.admit("password:victim", limit=5, window=window, at=now).admitted
    for n in range(10_000):
        store.admit(f"password:flood{n}", limit=5, window=window, at=now)
    # The victim's four attempts are still counted: one more, then the limit.
    assert store.admit("password:victim", limit=5, window=window, at=now).admitted
    assert not store.admit("password:victim", limit=5, window=window, at=now).admitted


def test_a_flood_of_new_addresses_does_not_evict_a_guessers_count(clock: FixedClock) -> None:
    store = MemoryAttemptStore(max_keys=100)
    now = clock.now()
    window = timedelta(seconds=60)
    for _ in range(5):
        assert store.admit("address:192.0.2.1", limit=5, window=window, at=now).admitted
    for n in range(10_000):
        store.admit(f"address:2001:db8:{n:x}::/64", limit=5, window=window, at=now)
    assert not store.admit("address:192.0.2.1", limit=5, window=window, at=now).admitted


def test_a_full_table_makes_room_from_expired_keys(clock: FixedClock) -> None:
    store = MemoryAttemptStore(max_keys=10)
    now = clock.now()
    window = timedelta(seconds=60)
    for n in range(10):
        store.admit(f"password:old{n}", limit=5, window=window, at=now)
    later = now + timedelta(seconds=61)
    assert store.admit("password:new", limit=1, window=window, at=later).admitted
    assert not store.admit("password:new", limit=1, window=window, at=later).admitted
