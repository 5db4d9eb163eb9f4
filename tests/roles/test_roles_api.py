"""Enterprise roles through the JSON API: the legal representative recognised from the
enterprise's record, staff invitations and their answers, acting for an enterprise, expiry on
the fixed clock, and the audit trail of what is done while acting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.roles.roles import get_roles
from tests.gateway.conftest import DATA_KEY
from tests.roles.conftest import (
    ORIGIN,
    OTHER_USCC,
    REPRESENTATIVE_ID,
    STAFF_ID,
    STAFF_PHONE,
    USCC,
    Browser,
    World,
)

VALID_UNTIL = "2027-06-30"


def invite(browser: Browser, **invitee: str) -> Any:
    return browser.post("/api/v1/enterprise/staff", {"valid_until": VALID_UNTIL, **invitee})


def accepted_staff(world: World, **invitee: str) -> Browser:
    """The staff member, signed in, after accepting the enterprise's invitation."""
    company = world.browser("acme")
    made = invite(company, **(invitee or {"id_card_number": STAFF_ID}))
    assert made.status_code == 201, made.get_json()
    person = world.browser("lisi")
    answer = person.post(
        f"/api/v1/account/invitations/{made.get_json()['invitation']['id']}/accept"
    )
    assert answer.status_code == 200, answer.get_json()
    return person


# --- the legal representative ---------------------------------------------------------------------


def test_legal_representative_with_level_2_acts_for_the_enterprise(world: World) -> None:
    person = world.browser("wangwu")
    roles = person.get("/api/v1/account/roles").get_json()["roles"]
    assert roles == [
        {
            "enterprise": {"id": world.enterprise.id, "name": "示例建设工程有限公司", "uscc": USCC},
            "role": "legal_representative",
            "valid_until": None,
        }
    ]
    assert person.get("/api/v1/session").get_json()["acting_for"] is None
    answer = person.act_as(world.enterprise.id)
    assert answer.status_code == 200, answer.get_json()
    acting_for = {
        "id": world.enterprise.id,
        "uscc": USCC,
        "name": "示例建设工程有限公司",
        "role": "legal_representative",
    }
    assert answer.get_json()["acting_for"] == acting_for
    session = person.get("/api/v1/session").get_json()
    assert session["account"]["id"] == world.representative.id  # still the person
    assert session["acting_for"] == acting_for
    # Back to oneself.
    assert person.act_as(None).get_json() == {"ok": True, "acting_for": None}
    assert person.get("/api/v1/session").get_json()["acting_for"] is None


def test_legal_representative_below_level_2_is_refused(
    world: World, make_person: Callable[..., Any]
) -> None:
    get_roles(world.app).set_legal_representative(
        world.accounts.find(world.enterprise.id).id,
        name="赵六",
        id_card_number="110105198001010016",
        at=world.clock.now(),
    )
    make_person("110105198001010016", "zhaoliu", real_name="赵六", real_name_level=1)
    person = world.browser("zhaoliu")
    answer = person.get("/api/v1/account/roles").get_json()
    assert answer["roles"] == []
    assert answer["pending_verification"] == [
        {"id": world.enterprise.id, "name": "示例建设工程有限公司", "uscc": USCC}
    ]
    refused = person.act_as(world.enterprise.id)
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "role_required"
    assert "法定代表人" in refused.get_json()["message"]
    in_english = person.post(
        "/api/v1/session/act-as",
        {"enterprise_id": world.enterprise.id},
        **{"Accept-Language": "en"},
    )
    assert "legal representative" in in_english.get_json()["message"]
    assert person.get("/api/v1/session").get_json()["acting_for"] is None


def test_a_change_of_legal_representative_takes_effect_at_once(
    world: World, outbox: Path, make_person: Callable[..., Any]
) -> None:
    person = world.browser("wangwu")
    assert person.act_as(world.enterprise.id).status_code == 200
    env = {
        "CERTGATE_DATABASE_URL": world.app.config["DATABASE_URL"],
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
        "CERTGATE_NOTIFY_SMS": f"outbox:{outbox}",
    }
    result = CliRunner().invoke(
        main,
        [
            "account",
            "set-legal-representative",
            USCC,
            "--name",
            "赵六",
            "--id-number",
            "110105198001010016",
            "--reason",
            "工商变更登记",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    # The former representative's next request is refused, acting or not.
    refused = person.get("/api/v1/account/messages")
    assert (refused.status_code, refused.get_json()["error"]) == (403, "role_required")
    assert person.get("/api/v1/account/roles").get_json()["roles"] == []
    # The new one (level 2) acts at once.
    make_person("110105198001010016", "zhaoliu", real_name="赵六", real_name_level=2)
    assert world.browser("zhaoliu").act_as(world.enterprise.id).status_code == 200
    # Audited with the reason, and the enterprise told.
    record = [r for r in world.audit() if r.event == "legal_representative_set"][-1]
    assert record.account_public_id == world.enterprise.id and "工商变更登记" in record.detail
    assert "110105198001010016" not in (record.detail or "")
    company = world.browser("acme")
    kinds = [m["kind"] for m in company.get("/api/v1/account/messages").get_json()["messages"]]
    assert "legal_representative_changed" in kinds


def test_create_enterprise_with_the_representatives_id_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "CERTGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "CERTGATE_DATA_KEY": DATA_KEY,
        "CERTGATE_PUBLIC_ORIGIN": ORIGIN,
        "CERTGATE_PASSWORD_MEMORY_COST": "1024",
        "CERTGATE_PASSWORD_TIME_COST": "1",
    }
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, list(args), env=env)

    bad = run(
        "account", "create", "enterprise", OTHER_USCC, "--name", "某某公司",
        "--legal-representative", "王五", "--legal-representative-id-number", "110105198001010017",
    )  # fmt: skip
    assert bad.exit_code == 2 and "GB 11643" in bad.output
    made = run(
        "account", "create", "enterprise", OTHER_USCC, "--name", "某某公司",
        "--legal-representative", "王五", "--legal-representative-id-number", REPRESENTATIVE_ID,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert REPRESENTATIVE_ID not in made.output
    person = run(
        "account", "create", "person", REPRESENTATIVE_ID, "--real-name", "王五",
        "--real-name-level", "2",
    )  # fmt: skip
    assert person.exit_code == 0, person.output
    from gateway import create_app

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app(operator=True)
    from gateway.accounts import get_accounts

    accounts = get_accounts(app)
    roles = get_roles(app).roles_of(accounts.find(REPRESENTATIVE_ID).id, at=_now())
    assert [(r.uscc, r.role) for r in roles] == [(OTHER_USCC, "legal_representative")]


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- staff ----------------------------------------------------------------------------------------


def test_invitation_lifecycle_by_id_card_number(world: World, outbox: Path) -> None:
    company = world.browser("acme")
    made = invite(company, id_card_number=STAFF_ID.lower())
    assert made.status_code == 201, made.get_json()
    invitation = made.get_json()["invitation"]
    assert invitation["state"] == "pending"
    assert invitation["invitee"] == {"kind": "id_card_number", "masked": "1101************2X"}
    assert invitation["valid_until"] == "2027-06-30T16:00:00Z"  # end of the day in Beijing
    listed = company.get("/api/v1/enterprise/staff").get_json()
    assert [i["id"] for i in listed["invitations"]] == [invitation["id"]]
    assert listed["staff"] == []

    person = world.browser("lisi")
    seen = person.get("/api/v1/account/invitations").get_json()["invitations"]
    assert [(i["id"], i["enterprise"]["uscc"], i["role"]) for i in seen] == [
        (invitation["id"], USCC, "staff")
    ]
    messages = person.get("/api/v1/account/messages").get_json()["messages"]
    assert messages[0]["kind"] == "staff_invited" and "示例建设工程有限公司" in messages[0]["text"]
    assert person.get("/api/v1/account/roles").get_json()["roles"] == []

    accepted = person.post(f"/api/v1/account/invitations/{invitation['id']}/accept")
    assert accepted.status_code == 200
    assert accepted.get_json()["role"]["valid_until"] == "2027-06-30T16:00:00Z"
    roles = person.get("/api/v1/account/roles").get_json()["roles"]
    assert [(r["enterprise"]["id"], r["role"], r["valid_until"]) for r in roles] == [
        (world.enterprise.id, "staff", "2027-06-30T16:00:00Z")
    ]
    assert person.get("/api/v1/account/invitations").get_json()["invitations"] == []
    staff = company.get("/api/v1/enterprise/staff").get_json()["staff"]
    assert [(s["person"]["id"], s["person"]["name"], s["state"]) for s in staff] == [
        (world.staff.id, "李四", "active")
    ]
    # Answered once.
    again = person.post(f"/api/v1/account/invitations/{invitation['id']}/decline")
    assert (again.status_code, again.get_json()["error"]) == (409, "invitation_closed")
    assert again.get_json()["state"] == "accepted"


def test_invitation_by_phone_declined(world: World) -> None:
    company = world.browser("acme")
    made = invite(company, phone="+86 139 1234 5678")
    assert made.status_code == 201
    person = world.browser("lisi")
    invitation_id = made.get_json()["invitation"]["id"]
    assert person.post(f"/api/v1/account/invitations/{invitation_id}/decline").status_code == 200
    assert person.get("/api/v1/account/roles").get_json()["roles"] == []
    assert company.get("/api/v1/enterprise/staff").get_json()["invitations"] == []


def test_invitation_of_someone_else_is_unknown(world: World) -> None:
    company = world.browser("acme")
    made = invite(company, phone=STAFF_PHONE)
    outsider = world.browser("wangwu")
    answer = outsider.post(
        f"/api/v1/account/invitations/{made.get_json()['invitation']['id']}/accept"
    )
    assert (answer.status_code, answer.get_json()["error"]) == (404, "invitation_unknown")
    missing = outsider.post("/api/v1/account/invitations/no-such-invitation/accept")
    assert missing.get_json()["error"] == "invitation_unknown"


def test_an_invitation_not_answered_in_time_is_closed(world: World) -> None:
    made = invite(world.browser("acme"), id_card_number=STAFF_ID)
    person = world.browser("lisi")
    world.clock.advance(timedelta(days=8).total_seconds())
    person = world.browser("lisi")  # the earlier session timed out meanwhile
    assert person.get("/api/v1/account/invitations").get_json()["invitations"] == []
    answer = person.post(
        f"/api/v1/account/invitations/{made.get_json()['invitation']['id']}/accept"
    )
    assert (answer.status_code, answer.get_json()["error"]) == (409, "invitation_closed")
    assert answer.get_json()["state"] == "expired"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"valid_until": "2020-01-01", "id_card_number": STAFF_ID}, 422, "period_invalid"),
        ({"valid_until": "2099-01-01", "id_card_number": STAFF_ID}, 422, "period_invalid"),
        ({"valid_until": "next week", "id_card_number": STAFF_ID}, 400, "bad_request"),
        ({"valid_until": "2030-01-01T00:00:00", "phone": STAFF_PHONE}, 400, "bad_request"),
        ({"valid_until": VALID_UNTIL}, 400, "bad_request"),
        ({"valid_until": VALID_UNTIL, "id_card_number": STAFF_ID, "phone": STAFF_PHONE}, 400,
         "bad_request"),
        ({"valid_until": VALID_UNTIL, "id_card_number": "110105198001010017"}, 422,
         "identifier_invalid"),
        ({"valid_until": VALID_UNTIL, "phone": "12345"}, 422, "identifier_invalid"),
    ],
)  # fmt: skip
def test_invitation_input_is_checked(world: World, body: Any, status: int, code: str) -> None:
    answer = world.browser("acme").post("/api/v1/enterprise/staff", body)
    assert (answer.status_code, answer.get_json()["error"]) == (status, code)


def test_period_message_names_the_limit(world: World) -> None:
    answer = world.browser("acme").post(
        "/api/v1/enterprise/staff",
        {"valid_until": "2020-01-01", "id_card_number": STAFF_ID},
        **{"Accept-Language": "en"},
    )
    assert "1098 days" in answer.get_json()["message"]


def test_only_the_enterprise_or_its_representative_manages_staff(world: World) -> None:
    staff = accepted_staff(world)
    for browser in (staff, world.browser("wangwu")):
        refused = browser.get("/api/v1/enterprise/staff")
        assert (refused.status_code, refused.get_json()["error"]) == (403, "enterprise_required")
    # Acting as staff is not enough either.
    assert staff.act_as(world.enterprise.id).status_code == 200
    refused = invite(staff, phone="13700000000")
    assert (refused.status_code, refused.get_json()["error"]) == (403, "enterprise_required")
    # The legal representative acting for the enterprise may.
    representative = world.browser("wangwu")
    assert representative.act_as(world.enterprise.id).status_code == 200
    assert invite(representative, phone="13700000000").status_code == 201
    listed = representative.get("/api/v1/enterprise/staff").get_json()
    assert [s["person"]["id"] for s in listed["staff"]] == [world.staff.id]
    record = [r for r in world.audit() if r.event == "staff_invited"][-1]
    assert record.account_public_id == world.representative.id
    assert f"acting for enterprise {world.enterprise.id} as legal_representative" in record.detail


def test_revoke_ends_the_role_and_acting(world: World) -> None:
    staff = accepted_staff(world)
    assert staff.act_as(world.enterprise.id).status_code == 200
    company = world.browser("acme")
    revoked = company.post(f"/api/v1/enterprise/staff/{world.staff.id}/revoke")
    assert revoked.status_code == 200
    again = company.post(f"/api/v1/enterprise/staff/{world.staff.id}/revoke")
    assert (again.status_code, again.get_json()["error"]) == (404, "role_unknown")
    refused = staff.get("/api/v1/account/messages")
    assert (refused.status_code, refused.get_json()["error"]) == (403, "role_required")
    # The session still tells what happened, and switching back is allowed.
    session = staff.get("/api/v1/session").get_json()
    assert session["acting_for"] is None
    assert session["acting_ended"]["uscc"] == USCC
    assert staff.act_as(None).status_code == 200
    kinds = [m["kind"] for m in staff.get("/api/v1/account/messages").get_json()["messages"]]
    assert "role_ended" in kinds
    state = company.get("/api/v1/enterprise/staff").get_json()["staff"][0]["state"]
    assert state == "revoked"


def test_leave_ends_the_role(world: World) -> None:
    staff = accepted_staff(world)
    left = staff.post(f"/api/v1/account/roles/{world.enterprise.id}/leave")
    assert left.status_code == 200
    assert staff.get("/api/v1/account/roles").get_json()["roles"] == []
    again = staff.post(f"/api/v1/account/roles/{world.enterprise.id}/leave")
    assert (again.status_code, again.get_json()["error"]) == (404, "role_unknown")
    refused = staff.act_as(world.enterprise.id)
    assert (refused.status_code, refused.get_json()["error"]) == (403, "role_required")
    company = world.browser("acme")
    assert company.get("/api/v1/enterprise/staff").get_json()["staff"][0]["state"] == "left"


def test_expiry_ends_the_role_without_anyone_acting(world: World) -> None:
    company = world.browser("acme")
    until = (world.clock.now() + timedelta(hours=2)).isoformat()
    made = company.post(
        "/api/v1/enterprise/staff", {"valid_until": until, "id_card_number": STAFF_ID}
    )
    assert made.status_code == 201, made.get_json()
    staff = world.browser("lisi")
    staff.post(f"/api/v1/account/invitations/{made.get_json()['invitation']['id']}/accept")
    assert staff.act_as(world.enterprise.id).status_code == 200
    assert staff.get("/api/v1/account/messages").status_code == 200
    world.clock.advance(2 * 3600 + 1)
    staff = world.browser("lisi")  # a new login; the old session idled out
    assert staff.get("/api/v1/account/roles").get_json()["roles"] == []
    refused = staff.act_as(world.enterprise.id)
    assert (refused.status_code, refused.get_json()["error"]) == (403, "role_required")


def test_expiry_while_acting_refuses_the_next_request(world: World) -> None:
    company = world.browser("acme")
    until = (world.clock.now() + timedelta(minutes=10)).isoformat()
    made = company.post(
        "/api/v1/enterprise/staff", {"valid_until": until, "id_card_number": STAFF_ID}
    )
    staff = world.browser("lisi")
    staff.post(f"/api/v1/account/invitations/{made.get_json()['invitation']['id']}/accept")
    assert staff.act_as(world.enterprise.id).status_code == 200
    world.clock.advance(11 * 60)
    refused = staff.post("/api/v1/account/messages/read", {"all": True})
    assert (refused.status_code, refused.get_json()["error"]) == (403, "role_required")
    record = world.audit()[-1]
    assert (record.event, record.outcome) == ("acting_refused", "role_required")
    assert record.account_public_id == world.staff.id
    assert world.enterprise.id in record.detail
    assert staff.act_as(None).status_code == 200
    assert staff.post("/api/v1/account/messages/read", {"all": True}).status_code == 200


def test_a_new_invitation_renews_the_period(world: World) -> None:
    staff = accepted_staff(world)
    company = world.browser("acme")
    renewed = company.post(
        "/api/v1/enterprise/staff", {"valid_until": "2028-01-31", "id_card_number": STAFF_ID}
    )
    staff.post(f"/api/v1/account/invitations/{renewed.get_json()['invitation']['id']}/accept")
    roles = staff.get("/api/v1/account/roles").get_json()["roles"]
    assert [r["valid_until"] for r in roles] == ["2028-01-31T16:00:00Z"]


# --- acting: who, and the audit trail -------------------------------------------------------------


def test_enterprise_login_stays_the_enterprise(world: World) -> None:
    company = world.browser("acme")
    session = company.get("/api/v1/session").get_json()
    assert session["account"]["kind"] == "enterprise" and session["acting_for"] is None
    refused = company.act_as(world.enterprise.id)
    assert (refused.status_code, refused.get_json()["error"]) == (403, "role_required")


def test_actions_while_acting_name_the_person_and_the_enterprise(world: World) -> None:
    staff = accepted_staff(world)
    assert staff.act_as(world.enterprise.id).status_code == 200
    switched = world.audit()[-1]
    assert (switched.event, switched.account_public_id) == ("act_as", world.staff.id)
    assert f"enterprise {world.enterprise.id}" in switched.detail and "staff" in switched.detail
    # A route that writes no record of its own is recorded while acting.
    before = len(world.audit())
    assert staff.post("/api/v1/account/messages/read", {"all": True}).status_code == 200
    added = world.audit()[before:]
    assert [(r.event, r.account_public_id) for r in added] == [("acting_request", world.staff.id)]
    assert f"acting for enterprise {world.enterprise.id} as staff" in added[0].detail
    # A failed action too.
    staff.post("/api/v1/account/password", {"current_password": "wrong", "new_password": "x"})
    failed = world.audit()[-1]
    assert failed.account_public_id == world.staff.id
    assert f"acting for enterprise {world.enterprise.id}" in failed.detail
    # Not acting: no enterprise in the record.
    staff.act_as(None)
    staff.post("/api/v1/account/messages/read", {"all": True})
    assert world.audit()[-1].event == "act_as"


def test_routes_need_a_session_and_csrf(world: World) -> None:
    anonymous = world.browser()
    for path in (
        "/api/v1/account/roles",
        "/api/v1/account/invitations",
        "/api/v1/enterprise/staff",
    ):
        answer = anonymous.get(path)
        assert (answer.status_code, answer.get_json()["error"]) == (401, "credentials_invalid")
    person = world.browser("wangwu")
    person.csrf = "wrong"
    answer = person.act_as(world.enterprise.id)
    assert (answer.status_code, answer.get_json()["error"]) == (400, "bad_request")


# --- pages ----------------------------------------------------------------------------------------


def test_every_page_shows_whom_the_person_acts_for(world: World) -> None:
    staff = accepted_staff(world)
    assert 'id="acting-banner"' not in staff.get("/account").get_data(as_text=True)
    staff.act_as(world.enterprise.id)
    for path in ("/account", "/messages", "/agreement?lang=en"):
        page = staff.get(path).get_data(as_text=True)
        assert 'id="acting-banner"' in page and "示例建设工程有限公司" in page, path
        assert 'data-acting-role="staff"' in page
    assert "Switch back to yourself" in staff.get("/agreement?lang=en").get_data(as_text=True)
    world.browser("acme").post(f"/api/v1/enterprise/staff/{world.staff.id}/revoke")
    page = staff.get("/account").get_data(as_text=True)
    assert 'class="acting-banner ended"' in page and "Switch back to yourself" in page
