"""The operator console's API: sign-in with password and TOTP, its own sessions (a user session
is refused), CSRF, lockout, roles, every route, and the audit records naming the operator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Flask
from sqlalchemy import select

from gateway.accounts import AccountService, get_accounts
from gateway.admin import totp
from gateway.admin.models import RealNameReview
from gateway.audit import get_audit_log, parse_checkpoint
from gateway.clock import FixedClock
from gateway.storage.database import get_database
from softhsm.pki import TestPki, random_id_card_number, random_uscc
from tests.admin.conftest import (
    OPERATOR_PASSWORD,
    Console,
    make_operator,
    operator_login,
    secret_of,
)
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import DATA_KEY, ORIGIN, PASSWORD, pki_anchor_config, post_json
from tests.gateway.test_token_login import token_login

SignIn = Callable[[str], Console]


def pem(*certificates: Any) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def audit_details(app: Flask, event: str) -> list[str]:
    return [r.detail or "" for r in get_audit_log(app).records() if r.event == event]


# --- TOTP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "code"),
    [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"),
     (2000000000, "69279037")],
)  # fmt: skip
def test_hotp_matches_the_rfc_6238_sha1_vectors(at: int, code: str) -> None:
    assert totp.hotp(b"12345678901234567890", at // 30, digits=8) == code


# --- operator accounts ---------------------------------------------------------------------------


def test_operator_create_reads_the_password_and_prints_a_totp_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main

    monkeypatch.chdir(tmp_path)
    env = {
        "CERTGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
        "CERTGATE_PASSWORD_MEMORY_COST": "1024",
        "CERTGATE_PASSWORD_TIME_COST": "1",
    }
    runner = CliRunner()
    args = ["operator", "create", "alice", "--role", "auditor", "--json"]
    result = runner.invoke(main, args, env=env, input=OPERATOR_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["name"] == "alice" and answer["role"] == "auditor"
    assert answer["totp_uri"].startswith("otpauth://totp/CertGate:alice?")
    assert len(secret_of(answer["totp_uri"])) == 32
    assert OPERATOR_PASSWORD not in result.output
    again = runner.invoke(main, args, env=env, input=OPERATOR_PASSWORD + "\n")
    assert again.exit_code == 2 and "already exists" in again.output
    short = runner.invoke(main, ["operator", "create", "bob", "--role", "admin"], env=env,
                          input="short\n")  # fmt: skip
    assert short.exit_code == 2 and "password" in short.output


# --- sign-in, sessions, CSRF, lockout ------------------------------------------------------------


def test_sign_in_needs_the_password_and_a_fresh_totp_code(app: Flask, clock: FixedClock) -> None:
    secret = make_operator(app, clock, "alice", "admin")
    browser = app.test_client()
    wrong_code = operator_login(browser, "alice", secret, clock, totp="000000")
    if wrong_code.status_code == 200:  # one in a million: 000000 is the right code
        clock.advance(30)
        wrong_code = operator_login(browser, "alice", secret, clock, totp="000000")
    assert (wrong_code.status_code, wrong_code.json["error"]) == (401, "credentials_invalid")
    wrong_password = operator_login(browser, "alice", secret, clock, password="not it at all")
    assert wrong_password.json["error"] == "credentials_invalid"
    good = operator_login(browser, "alice", secret, clock)
    assert good.status_code == 200
    assert good.json["operator"] == {"name": "alice", "role": "admin"}
    session = browser.get("/admin/api/session", headers={"Origin": ORIGIN})
    assert session.status_code == 200 and session.json["operator"]["name"] == "alice"
    # The same code again (a code seen over a shoulder): refused, it signs in once.
    replay = operator_login(app.test_client(), "alice", secret, clock)
    assert replay.json["error"] == "credentials_invalid"
    assert "operator alice" in audit_details(app, "operator_login")[-1]


def test_a_user_session_is_no_operator_session(
    app: Flask, accounts: AccountService, clock: FixedClock
) -> None:
    accounts.create_person(
        real_name="张三", id_card_number=random_id_card_number(), login_name="zhangsan",
        password=PASSWORD, at=clock.now(),
    )  # fmt: skip
    browser = app.test_client()
    login = post_json(browser, "/api/v1/login/password", {"identifier": "zhangsan",
                                                          "password": PASSWORD})  # fmt: skip
    assert login.status_code == 200
    csrf = browser.get("/api/v1/session").json["csrf_token"]
    for response in (
        browser.get("/admin/api/session", headers={"Origin": ORIGIN}),
        browser.get("/admin/api/accounts?q=zhangsan", headers={"Origin": ORIGIN}),
        browser.post("/admin/api/audit/verify", headers={"Origin": ORIGIN, "X-CSRF-Token": csrf}),
    ):
        assert (response.status_code, response.json["error"]) == (401, "credentials_invalid")


def test_an_operator_session_is_no_user_session(sign_in: SignIn) -> None:
    admin = sign_in("admin")
    assert admin.client.get("/api/v1/session").status_code == 401


def test_every_change_needs_the_csrf_token(sign_in: SignIn, accounts: AccountService,
                                           clock: FixedClock) -> None:  # fmt: skip
    admin = sign_in("admin")
    view = accounts.create_person(real_name="李四", id_card_number=random_id_card_number(),
                                  at=clock.now())  # fmt: skip
    for path, body in (
        (f"/accounts/{view.id}/freeze", {"reason": "核查"}),
        ("/audit/verify", {}),
        ("/logout", {}),
        ("/clients", {"name": "x", "protocol": "cas", "services": ["https://a.example/"]}),
    ):
        refused = admin.post(path, body, csrf=False)
        assert (refused.status_code, refused.json["error"]) == (400, "bad_request"), path
        wrong = admin.post(path, body, csrf=False, **{"X-CSRF-Token": "not-the-token"})
        assert wrong.status_code == 400, path
    assert accounts.find(view.id).status == "active"


def test_failed_sign_ins_lock_the_operator_name(app: Flask, clock: FixedClock) -> None:
    secret = make_operator(app, clock, "alice", "admin")
    browser = app.test_client()
    codes: list[dict[str, Any]] = []
    while not codes or codes[-1]["error"] != "account_locked":
        codes.append(operator_login(browser, "alice", secret, clock, password="wrong one!").json)
        if codes[-1]["error"] == "rate_limited":
            clock.advance(app.config["RATE_LIMIT_WINDOW"])
        assert len(codes) < 40, codes
    failures = [c for c in codes if c["error"] == "credentials_invalid"]
    assert len(failures) == app.config["LOCKOUT_THRESHOLD"] - 1
    assert codes[-1]["method"] == "operator"
    clock.advance(30)  # a fresh code, the right password: still locked
    locked = operator_login(browser, "alice", secret, clock)
    assert (locked.status_code, locked.json["error"]) == (403, "account_locked")
    assert "操作员" in locked.json["message"]
    clock.advance(app.config["LOCKOUT_DURATION"] + 30)
    assert operator_login(browser, "alice", secret, clock).status_code == 200


def test_sessions_time_out_when_idle(sign_in: SignIn, clock: FixedClock) -> None:
    admin = sign_in("admin")
    clock.advance(14 * 60)
    assert admin.get("/session").status_code == 200
    clock.advance(15 * 60 + 1)
    assert admin.get("/session").status_code == 401


def test_logout_ends_the_console_session(sign_in: SignIn) -> None:
    admin = sign_in("admin")
    assert admin.post("/logout").status_code == 200
    assert admin.get("/session").status_code == 401


# --- roles ---------------------------------------------------------------------------------------

# (method, path, body) of each route; the account and review ids are filled in by the test.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/trust-anchors", None, "read"),
    ("POST", "/trust-anchors", {"pem": "junk"}, "change"),
    ("POST", "/trust-anchors/unknown/remove", {}, "change"),
    ("POST", "/mapping/test", {"pem": "junk"}, "read"),
    ("GET", "/accounts?q={account}", None, "read"),
    ("POST", "/accounts/{account}/unmask", {"reason": "投诉核查"}, "unmask"),
    ("POST", "/accounts/{account}/freeze", {"reason": "核查"}, "change"),
    ("POST", "/accounts/{account}/unfreeze", {"reason": "核查完毕"}, "change"),
    ("POST", "/accounts/{account}/suspend", {"reason": "欠费"}, "change"),
    ("POST", "/accounts/{account}/terminate", {"reason": "合同终止"}, "change"),
    ("POST", "/accounts/{account}/unlock", {"reason": "本人来电"}, "change"),
    ("GET", "/reviews", None, "review"),
    ("POST", "/reviews/{review}/reject", {"reason": "材料不全"}, "review"),
    ("GET", "/enterprises/{enterprise}/roles", None, "read"),
    ("GET", "/clients", None, "read"),
    ("POST", "/clients", {"name": "OA", "protocol": "cas", "services": ["https://oa.example/"]},
     "change"),
    ("GET", "/audit", None, "audit"),
    ("POST", "/audit/verify", {}, "audit"),
    ("POST", "/audit/export", {}, "audit"),
]  # fmt: skip
ALLOWED = {
    "admin": {"read", "change", "review", "audit", "unmask"},
    "auditor": {"read", "audit"},
    "reviewer": {"review"},
}


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_each_role_reaches_only_its_routes(
    role: str, sign_in: SignIn, app: Flask, accounts: AccountService, clock: FixedClock
) -> None:
    operator = sign_in(role)
    person = accounts.create_person(real_name="王五", id_card_number=random_id_card_number(),
                                    at=clock.now())  # fmt: skip
    enterprise = accounts.create_enterprise(
        unified_social_credit_code=random_uscc(), name="示例建设工程有限公司", at=clock.now()
    )
    with get_database(app).session() as session:
        review = RealNameReview(account_id=accounts.find(person.id).id, state="pending",
                                requested_at=clock.now())  # fmt: skip
        session.add(review)
        session.flush()
        review_id = review.id
    for method, template, body, action in ROUTES:
        path = template.format(account=person.id, review=review_id, enterprise=enterprise.id)
        response = operator.get(path) if method == "GET" else operator.post(path, body)
        if action in ALLOWED[role]:
            assert response.status_code != 403, (role, path, response.json)
        else:
            assert (response.status_code, response.json["error"]) == (403, "forbidden"), path
    if role == "auditor":
        refused = [r.detail for r in get_audit_log(app).records() if r.outcome == "forbidden"]
        assert refused and all(f"operator {operator.name}" in (d or "") for d in refused)


def test_forbidden_and_review_closed_speak_both_languages(
    sign_in: SignIn, app: Flask, accounts: AccountService, clock: FixedClock
) -> None:
    auditor = sign_in("auditor")
    for language, text in (("zh-CN", "无权"), ("en", "does not allow")):
        answer = auditor.post("/clients", {"name": "x", "protocol": "cas"},
                              **{"Accept-Language": language})  # fmt: skip
        assert answer.json["error"] == "forbidden" and text in answer.json["message"]
    reviewer = sign_in("reviewer")
    person = accounts.create_person(real_name="王五", id_card_number=random_id_card_number(),
                                    at=clock.now())  # fmt: skip
    with get_database(app).session() as session:
        review = RealNameReview(account_id=accounts.find(person.id).id, state="pending",
                                requested_at=clock.now())  # fmt: skip
        session.add(review)
        session.flush()
        review_id = review.id
    assert reviewer.post(f"/reviews/{review_id}/approve", {"reason": "柜台核验"}).status_code == 200
    for language, text in (("zh-CN", "已处理"), ("en", "already been decided")):
        again = reviewer.post(f"/reviews/{review_id}/reject", {"reason": "x"},
                              **{"Accept-Language": language})  # fmt: skip
        assert (again.status_code, again.json["error"]) == (409, "review_closed")
        assert text in again.json["message"]


# --- accounts ------------------------------------------------------------------------------------


def test_search_by_any_identifier_masks_personal_data(
    sign_in: SignIn, accounts: AccountService, clock: FixedClock
) -> None:
    admin = sign_in("admin")
    number = random_id_card_number()
    person = accounts.create_person(real_name="张三丰", id_card_number=number, phone="13912345678",
                                    login_name="zhangsan", at=clock.now())  # fmt: skip
    for query in (person.id, number, "13912345678", "zhangsan"):
        found = admin.get(f"/accounts?q={query}").json["accounts"]
        assert [a["id"] for a in found] == [person.id], query
        text = json.dumps(found, ensure_ascii=False)
        assert number not in text and "13912345678" not in text and "张三丰" not in text
        assert found[0]["display_name"] == "张**"
    uscc = random_uscc()
    firm = accounts.create_enterprise(unified_social_credit_code=uscc, name="示例建设工程有限公司",
                                      at=clock.now())  # fmt: skip
    assert [a["id"] for a in admin.get("/accounts?q=建设工程").json["accounts"]] == [firm.id]
    assert [a["id"] for a in admin.get(f"/accounts?q={uscc}").json["accounts"]] == [firm.id]


def test_unmasking_needs_a_reason_and_is_audited(
    sign_in: SignIn, app: Flask, accounts: AccountService, clock: FixedClock
) -> None:
    admin = sign_in("admin")
    number = random_id_card_number()
    person = accounts.create_person(real_name="张三丰", id_card_number=number, at=clock.now())
    assert admin.post(f"/accounts/{person.id}/unmask", {"reason": "  "}).status_code == 400
    shown = admin.post(f"/accounts/{person.id}/unmask", {"reason": "投诉工单 2026-118"})
    assert shown.json["account"]["id_card_number"] == number
    assert shown.json["account"]["display_name"] == "张三丰"
    (detail,) = [r.detail or "" for r in get_audit_log(app).records()
                 if r.event == "account_unmasked" and r.outcome == "ok"]  # fmt: skip
    assert detail.startswith(f"operator {admin.name}") and "投诉工单 2026-118" in detail
    assert number not in detail


def test_freeze_stops_certificate_logins_notifies_and_is_audited(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])
    accounts = get_accounts(app)
    number = random_id_card_number()
    issued = test_pki.issue("person", "王五", id_number=number, at=PKI_EPOCH)
    person = accounts.create_person(real_name="王五", id_card_number=number, at=clock.now())
    user = app.test_client()
    assert token_login(user, issued).status_code == 200
    secret = make_operator(app, clock, "alice", "admin")
    browser = app.test_client()
    signed = operator_login(browser, "alice", secret, clock).json
    admin = Console(browser, signed["csrf_token"], "alice")
    frozen = admin.post(f"/accounts/{person.id}/freeze", {"reason": "涉嫌冒用"})
    assert frozen.status_code == 200 and frozen.json["account"]["status"] == "frozen"
    assert user.get("/api/v1/session").status_code == 401  # the user's session ended
    again = token_login(app.test_client(), issued)
    assert (again.status_code, again.json["error"]) == (403, "account_disabled")
    (detail,) = audit_details(app, "account_frozen")
    assert detail.startswith("operator alice") and "涉嫌冒用" in detail
    messages = [m.kind for m in __import__("gateway.lifecycle.notices", fromlist=["x"])
                .get_notices(app).messages(accounts.find(person.id).id)]  # fmt: skip
    assert "account_frozen" in messages
    assert admin.post(f"/accounts/{person.id}/unfreeze", {"reason": "核查完毕"}).status_code == 200
    assert token_login(app.test_client(), issued).status_code == 200


def test_unlock_lifts_a_password_lockout(
    sign_in: SignIn, accounts: AccountService, clock: FixedClock
) -> None:
    admin = sign_in("admin")
    person = accounts.create_person(real_name="李四", id_card_number=random_id_card_number(),
                                    at=clock.now())  # fmt: skip
    account_id = accounts.find(person.id).id
    accounts.lock(account_id, until=clock.now().replace(year=clock.now().year + 1), at=clock.now())
    assert admin.get(f"/accounts?q={person.id}").json["accounts"][0]["locked_until"]
    assert admin.post(f"/accounts/{person.id}/unlock", {"reason": "本人来电"}).status_code == 200
    assert accounts.find(person.id).locked_until is None


# --- the real-name review queue ------------------------------------------------------------------


def test_a_person_asks_for_review_and_a_reviewer_approves(
    sign_in: SignIn, app: Flask, accounts: AccountService, clock: FixedClock
) -> None:
    accounts.create_person(real_name="张三", id_card_number=random_id_card_number(),
                           login_name="zhangsan", password=PASSWORD, at=clock.now())  # fmt: skip
    user = app.test_client()
    post_json(user, "/api/v1/login/password", {"identifier": "zhangsan", "password": PASSWORD})
    csrf = user.get("/api/v1/session").json["csrf_token"]
    refused = post_json(user, "/api/v1/account/real-name-review", {"note": "x"})
    assert refused.status_code == 400  # no CSRF token
    asked = post_json(user, "/api/v1/account/real-name-review", {"note": "携带身份证到柜台"},
                      **{"X-CSRF-Token": csrf})  # fmt: skip
    assert asked.status_code == 200
    reviewer = sign_in("reviewer")
    (queued,) = reviewer.get("/reviews").json["reviews"]
    assert queued["note"] == "携带身份证到柜台" and queued["account"]["display_name"] == "张*"
    assert reviewer.get("/accounts?q=zhangsan").status_code == 403
    decided = reviewer.post(f"/reviews/{queued['id']}/approve", {"reason": "柜台核验身份证原件"})
    assert decided.json["review"]["state"] == "approved"
    assert decided.json["review"]["decided_by"] == reviewer.name
    assert accounts.find("zhangsan").real_name_level == 2
    assert reviewer.get("/reviews").json["reviews"] == []
    (detail,) = audit_details(app, "real_name_review")
    assert detail.startswith(f"operator {reviewer.name}")
    with get_database(app).session() as session:
        assert session.scalars(select(RealNameReview.state)).all() == ["approved"]


# --- enterprise roles ----------------------------------------------------------------------------


def test_enterprise_roles_show_the_legal_representative_and_say_what_is_not_installed(
    sign_in: SignIn, accounts: AccountService, clock: FixedClock
) -> None:
    auditor = sign_in("auditor")
    firm = accounts.create_enterprise(unified_social_credit_code=random_uscc(),
                                      name="示例建设工程有限公司", legal_representative="赵六",
                                      at=clock.now())  # fmt: skip
    answer = auditor.get(f"/enterprises/{firm.id}/roles").json
    assert answer["legal_representative"] == "赵*"
    import importlib.util

    # The enterprise roles capability is optional: with it the (empty) staff list, without it
    # no staff list at all and the page says it is not installed.
    assert answer["installed"] is (importlib.util.find_spec("gateway.roles") is not None)
    assert ("staff" in answer) is answer["installed"]
    if answer["installed"]:
        assert answer["staff"] == []


# --- trust anchors and the mapping tester --------------------------------------------------------


def test_add_an_anchor_test_a_certificate_and_remove_it(
    sign_in: SignIn, app: Flask, accounts: AccountService, clock: FixedClock, test_pki: TestPki
) -> None:
    admin = sign_in("admin")
    number = random_id_card_number()
    issued = test_pki.issue("person", "王五", id_number=number, at=PKI_EPOCH)
    person = accounts.create_person(real_name="王五", id_card_number=number, at=clock.now())
    leaf_and_chain = pem(issued.certificate, *issued.chain[:-1])
    before = admin.post("/mapping/test", {"pem": leaf_and_chain}).json["result"]
    # No anchor at all yet: a login would get "unavailable", and so does the tester.
    assert before["reaches"] is None and before["code"] == "unavailable"
    root = test_pki.ca_certificate_path("root").read_text()
    crls = [str(test_pki.crl_path(ca)) for ca in ("rsa", "root")]
    added = admin.post("/trust-anchors", {"pem": root, "name": "测试根 CA", "crl": crls})
    assert added.status_code == 200, added.json
    listed = {a["name"]: a for a in admin.get("/trust-anchors").json["trust_anchors"]}
    assert listed["测试根 CA"]["revocation"] == "hard-fail"
    assert listed["测试根 CA"]["active"] is False  # the running engine takes it at restart
    after = admin.post("/mapping/test", {"pem": leaf_and_chain}).json["result"]
    assert after["code"] == "ok" and after["reaches"]["id"] == person.id
    assert after["reaches"]["display_name"] == "王*"
    assert after["matched_by"] == "person: id_card_number"
    assert admin.post("/mapping/test", {"pem": "not a certificate"}).status_code == 400
    duplicate = admin.post("/trust-anchors", {"pem": root})
    assert duplicate.json["error"] == "bad_request"
    thumbprint = added.json["trust_anchor"]["sha256"]
    assert admin.post(f"/trust-anchors/{thumbprint}/remove").status_code == 200
    assert admin.get("/trust-anchors").json["trust_anchors"] == []
    assert audit_details(app, "trust_anchor_added")[0].startswith(f"operator {admin.name}")
    assert audit_details(app, "mapping_tested")


def test_configured_anchors_show_their_crls_next_update(
    make_app: Callable[..., Flask], test_pki: TestPki, clock: FixedClock
) -> None:
    app = make_app(TRUST_ANCHORS=[pki_anchor_config(test_pki)])
    secret = make_operator(app, clock, "alice", "auditor")
    browser = app.test_client()
    csrf = operator_login(browser, "alice", secret, clock).json["csrf_token"]
    (anchor,) = Console(browser, csrf, "alice").get("/trust-anchors").json["trust_anchors"]
    assert anchor["source"] == "certgate.toml" and anchor["active"] is True
    loaded = [crl for crl in anchor["crl"] if crl["loaded"]]
    assert len(loaded) == 4 and all(crl["next_update"] and crl["fresh"] for crl in loaded)
    assert all(crl["age_seconds"] >= 0 for crl in loaded)


# --- SSO clients ---------------------------------------------------------------------------------


def test_clients_add_rotate_and_settings(sign_in: SignIn, app: Flask) -> None:
    from gateway.sso.clients import get_clients

    admin = sign_in("admin")
    made = admin.post(
        "/clients",
        {"name": "OA", "protocol": "oidc", "redirect_uris": ["https://oa.example.cn/callback"]},
    )
    client_id, first_secret = made.json["client"]["client_id"], made.json["client_secret"]
    registered = get_clients(app).get(client_id)
    assert registered is not None and registered.check_client_secret(first_secret)
    rotated = admin.post(f"/clients/{client_id}/rotate-secret").json["client_secret"]
    registered = get_clients(app).get(client_id)
    assert registered is not None
    assert registered.check_client_secret(rotated) and not registered.check_client_secret(
        first_secret
    )
    changed = admin.post(f"/clients/{client_id}/settings", {
        "consent": "skip", "backchannel_logout_uri": "https://oa.example.cn/logout",
        "post_logout_redirect_uris": ["https://oa.example.cn/bye"]})  # fmt: skip
    assert changed.json["client"]["consent"] == "skip"
    assert changed.json["client"]["backchannel_logout_uri"] == "https://oa.example.cn/logout"
    bad = admin.post(f"/clients/{client_id}/settings", {"backchannel_logout_uri": "http://x.cn/"})
    assert bad.json["error"] == "bad_request"
    assert [c["client_id"] for c in admin.get("/clients").json["clients"]] == [client_id]
    assert first_secret not in json.dumps(get_audit_log(app).records()[-1].detail or "")


# --- the audit trail -----------------------------------------------------------------------------


def test_audit_filter_verify_and_signed_export(sign_in: SignIn, app: Flask) -> None:
    auditor = sign_in("auditor")
    verdict = auditor.post("/audit/verify").json
    # The verification's own record comes after the answer.
    assert verdict["ok"] is True and verdict["records"] == len(get_audit_log(app).records()) - 1
    mine = auditor.get(f"/audit?operator={auditor.name}").json["records"]
    assert mine and all(auditor.name in r["detail"] for r in mine)
    assert auditor.get("/audit?event=audit_verified").json["records"][0]["event"] == (
        "audit_verified"
    )
    export = auditor.post("/audit/export", {"from": 1, "to": 2})
    assert export.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.get_data(as_text=True).splitlines()]
    assert [line["id"] for line in lines[:-1]] == [1, 2]
    assert all(len(line["chain_hash"]) == 64 for line in lines[:-1])
    checkpoint = parse_checkpoint(lines[-1]["checkpoint"])
    assert get_audit_log(app).checkpoint_is_genuine(checkpoint)
    # The checkpoint verifies the trail later, through the console too.
    assert auditor.post("/audit/verify", {"checkpoint": checkpoint.line()}).json["ok"] is True
    assert auditor.post("/audit/export", {"from": 5, "to": 2}).status_code == 400


def test_a_changed_record_is_reported(sign_in: SignIn, app: Flask) -> None:
    from sqlalchemy import update

    from gateway.storage.models import AuditRecord

    auditor = sign_in("auditor")
    with get_database(app).session() as session:
        session.execute(update(AuditRecord).where(AuditRecord.id == 1).values(detail="edited"))
    verdict = auditor.post("/audit/verify").json
    assert verdict["ok"] is False and verdict["problems"][0]["record"] == 1


# --- the page ------------------------------------------------------------------------------------


def test_the_console_page_has_the_strict_csp_and_both_languages(client: Any) -> None:
    page = client.get("/admin/")
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "运营管理后台" in page.get_data(as_text=True)
    assert "Operator console" in client.get("/admin/?lang=en").get_data(as_text=True)


def test_migrations_form_one_line() -> None:
    versions = Path(__file__).resolve().parents[2] / "gateway" / "migrations" / "versions"
    downs: dict[str, str] = {}
    for path in versions.glob("0*.py"):
        text = path.read_text()
        down = text.split('down_revision = "', 1)[1].split('"', 1)[0] if 'down_revision = "' in \
            text else ""  # fmt: skip
        assert down not in downs, f"{path.name} and {downs.get(down)} share {down}"
        downs[down] = path.name
