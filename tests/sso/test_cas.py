"""CAS 3.0 against the served gateway, with a CAS client written from the protocol specification
(tests/sso/relying_parties.py): login, ticket validation (plain and p3), the errors, renew,
gateway, logout."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from gateway.sso.cas import service_matches
from gateway.sso.clients import get_clients
from softhsm.pki import TestPki
from tests.fixtures_pki import PKI_EPOCH
from tests.gateway.conftest import pki_anchor_config
from tests.sso.conftest import Gateway
from tests.sso.relying_parties import cas_ticket, cas_validate
from tests.sso.test_step_up_and_keys import usb_key_login

APP = "https://cas-app.example.cn/app"
SERVICE = APP + "/login?from=cas"


def _cas_client(gateway: Gateway, *prefixes: str) -> str:
    made = get_clients(gateway.app).add(
        "工程监管平台", protocol="cas", at=gateway.clock.now(), services=prefixes or (APP,)
    )
    return made.client.client_id


def test_login_without_a_session_goes_to_the_login_page_and_back(gateway: Gateway) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    answer = browser.get("/cas/login", service=SERVICE)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith("/login?next=")
    back = parse_qs(urlsplit(location).query)["next"][0]
    assert back.startswith("/cas/login?") and parse_qs(urlsplit(back).query)["service"] == [SERVICE]
    browser.password_login()
    returned = browser.get(back)
    assert returned.status_code == 302
    ticket = parse_qs(urlsplit(returned.headers["Location"]).query)["ticket"][0]
    answer_xml = cas_validate(gateway, SERVICE, ticket)
    assert answer_xml.user == gateway.account.id
    assert answer_xml.attributes["isFromNewLogin"] == "true"


def test_a_ticket_validates_once_with_the_p3_attributes(gateway: Gateway) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    ticket = cas_ticket(gateway, browser, SERVICE)
    first = cas_validate(gateway, SERVICE, ticket)
    assert first.failure_code is None
    assert first.user == gateway.account.id
    assert first.attributes["name"] == "张三"
    assert first.attributes["account_kind"] == "person"
    assert first.attributes["real_name_level"] == str(gateway.account.real_name_level)
    assert first.attributes["acr"] == "urn:certgate:loa:1"
    assert first.values["amr"] == ["pwd"]  # how the person signed in (RFC 8176)
    assert "uscc" not in first.attributes  # a person has none
    again = cas_validate(gateway, SERVICE, ticket)
    assert again.failure_code == "INVALID_TICKET"


def test_amr_after_a_usb_key_login_is_one_element_per_method(
    make_gateway: Callable[..., Gateway], test_pki: TestPki
) -> None:
    gateway = make_gateway(TRUST_ANCHORS=[pki_anchor_config(test_pki, hardware_keys=True)])
    issued = test_pki.issue("person", "张三", id_number=gateway.id_card_number, at=PKI_EPOCH)
    _cas_client(gateway)
    browser = gateway.browser()
    assert usb_key_login(gateway, browser, issued)["acr"] == "urn:certgate:loa:4"
    answer = cas_validate(gateway, SERVICE, cas_ticket(gateway, browser, SERVICE))
    assert answer.failure_code is None
    assert answer.values["amr"] == ["hwk", "pin", "mfa"]  # as the ID token's amr says
    assert answer.attributes["acr"] == "urn:certgate:loa:4"


def test_service_validate_answers_the_user_without_attributes(gateway: Gateway) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    answer = cas_validate(gateway, SERVICE, cas_ticket(gateway, browser, SERVICE), p3=False)
    assert answer.user == gateway.account.id and answer.attributes == {}


def test_an_enterprise_gets_its_credit_code(gateway: Gateway) -> None:
    from gateway.accounts import get_accounts
    from tests.gateway.conftest import PASSWORD

    get_accounts(gateway.app).create_enterprise(
        unified_social_credit_code="91440300MA5H8REU3K",
        name="示例建设工程有限公司",
        login_name="demo",
        password=PASSWORD,
        at=gateway.clock.now(),
    )
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login("demo")
    answer = cas_validate(gateway, SERVICE, cas_ticket(gateway, browser, SERVICE))
    assert answer.attributes["account_kind"] == "enterprise"
    assert answer.attributes["uscc"] == "91440300MA5H8REU3K"
    assert answer.attributes["name"] == "示例建设工程有限公司"


def test_the_json_format(gateway: Gateway) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    ticket = cas_ticket(gateway, browser, SERVICE)
    url = gateway.url + "/cas/p3/serviceValidate"
    ok = requests.get(
        url, params={"service": SERVICE, "ticket": ticket, "format": "JSON"}, timeout=10
    )
    success = ok.json()["serviceResponse"]["authenticationSuccess"]
    assert success["user"] == gateway.account.id
    assert success["attributes"]["account_kind"] == ["person"]
    assert success["attributes"]["amr"] == ["pwd"]
    again = requests.get(
        url, params={"service": SERVICE, "ticket": ticket, "format": "JSON"}, timeout=10
    )
    assert again.json()["serviceResponse"]["authenticationFailure"]["code"] == "INVALID_TICKET"


def test_an_expired_ticket_is_refused(gateway: Gateway) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    ticket = cas_ticket(gateway, browser, SERVICE)
    gateway.clock.advance(61)
    assert cas_validate(gateway, SERVICE, ticket).failure_code == "INVALID_TICKET"


def test_a_ticket_for_another_service_is_refused_and_spent(gateway: Gateway) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    ticket = cas_ticket(gateway, browser, SERVICE)
    assert cas_validate(gateway, APP + "/other", ticket).failure_code == "INVALID_SERVICE"
    # One attempt spends the ticket, whatever its outcome (CAS 3.0 §3.5).
    assert cas_validate(gateway, SERVICE, ticket).failure_code == "INVALID_TICKET"


@pytest.mark.parametrize(
    ("service", "ticket", "code"),
    [
        ("", "ST-x", "INVALID_REQUEST"),
        (SERVICE, "", "INVALID_REQUEST"),
        (SERVICE, "ST-never-issued", "INVALID_TICKET"),
        (SERVICE, "PT-not-a-service-ticket", "INVALID_TICKET"),
    ],
)
def test_validation_errors(gateway: Gateway, service: str, ticket: str, code: str) -> None:
    _cas_client(gateway)
    assert cas_validate(gateway, service, ticket).failure_code == code


def test_an_unregistered_service_gets_an_error_page_not_a_redirect(gateway: Gateway) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    for service in (
        "https://evil.example.com/app",
        "https://cas-app.example.cn/application",  # not at a segment boundary
        "https://cas-app.example.cn:8443/app/x",  # another port
        "http://cas-app.example.cn/app/x",  # another scheme
        "https://cas-app.example.cn/app/../admin",  # a dot segment
    ):
        answer = browser.get("/cas/login", service=service)
        assert answer.status_code == 400, service
        assert "Location" not in answer.headers
        assert "service_invalid" in answer.text


@pytest.mark.parametrize(
    ("service", "prefix", "matches"),
    [
        ("https://a.example.cn/app", "https://a.example.cn/app", True),
        ("https://a.example.cn/app/", "https://a.example.cn/app", True),
        ("https://a.example.cn/app/x?y=1", "https://a.example.cn/app", True),
        ("https://A.EXAMPLE.CN:443/app/x", "https://a.example.cn/app", True),
        ("https://a.example.cn/app/x", "https://a.example.cn/app/", True),
        ("https://a.example.cn/application", "https://a.example.cn/app", False),
        ("https://a.example.cn/app", "https://a.example.cn/app/", False),
        ("https://a.example.cn.evil.cn/app", "https://a.example.cn/app", False),
        ("https://user@a.example.cn/app", "https://a.example.cn/app", False),
        ("https://a.example.cn/app/%2e%2e/x", "https://a.example.cn/app", False),
        ("https://a.example.cn/app/x#f", "https://a.example.cn/app", False),
        ("https://a.example.cn/app\\..\\x", "https://a.example.cn/app", False),
        ("javascript:alert(1)", "https://a.example.cn/app", False),
    ],
)
def test_service_prefix_rule(service: str, prefix: str, matches: bool) -> None:
    assert service_matches(service, prefix) is matches


def test_renew_forces_a_new_login(gateway: Gateway) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    gateway.clock.advance(120)
    # An ordinary ticket from the older login does not pass a renew validation.
    old = cas_ticket(gateway, browser, SERVICE)
    refused = cas_validate(gateway, SERVICE, old, renew="true")
    assert refused.failure_code == "INVALID_TICKET"
    # renew=true sends the person to sign in again although the session lives.
    answer = browser.get("/cas/login", service=SERVICE, renew="true")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=")
    back = parse_qs(urlsplit(answer.headers["Location"]).query)["next"][0]
    # Coming back without signing in again still gets no ticket.
    assert browser.get(back).headers["Location"].startswith("/login?next=")
    gateway.clock.advance(5)
    browser.password_login()
    returned = browser.get(back)
    ticket = parse_qs(urlsplit(returned.headers["Location"]).query)["ticket"][0]
    fresh = cas_validate(gateway, SERVICE, ticket, renew="true")
    assert fresh.failure_code is None and fresh.attributes["isFromNewLogin"] == "true"


def test_gateway_without_a_session_returns_without_a_ticket(gateway: Gateway) -> None:
    _cas_client(gateway)
    answer = gateway.browser().get("/cas/login", service=SERVICE, gateway="true")
    assert answer.status_code == 302 and answer.headers["Location"] == SERVICE


def test_a_ticket_of_a_session_that_ended_is_refused(gateway: Gateway) -> None:
    from tests.sso.relying_parties import csrf_post

    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    ticket = cas_ticket(gateway, browser, SERVICE)
    assert csrf_post(browser, "/api/v1/logout", {}).status_code == 200
    assert cas_validate(gateway, SERVICE, ticket).failure_code == "INVALID_TICKET"


def test_logout_ends_the_session_and_redirects_only_to_registered_services(
    gateway: Gateway,
) -> None:
    _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    out = browser.get("/cas/logout", service="https://evil.example.com/")
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    # The session is over: the next CAS login asks for a login.
    assert browser.get("/cas/login", service=SERVICE).headers["Location"].startswith("/login?")
    browser.password_login()
    back = browser.get("/cas/logout", service=SERVICE)
    assert back.status_code == 302 and back.headers["Location"] == SERVICE


def test_every_ticket_event_is_audited(gateway: Gateway) -> None:
    from sqlalchemy import select

    from gateway.storage.database import get_database
    from gateway.storage.models import AuditRecord

    client_id = _cas_client(gateway)
    browser = gateway.browser()
    browser.password_login()
    ticket = cas_ticket(gateway, browser, SERVICE)
    cas_validate(gateway, SERVICE, ticket)
    cas_validate(gateway, SERVICE, ticket)
    with get_database(gateway.app).session() as session:
        rows = session.execute(
            select(AuditRecord.event, AuditRecord.outcome, AuditRecord.detail).where(
                AuditRecord.event.in_(("cas_login", "cas_validate"))
            )
        ).all()
    outcomes = [(event, outcome) for event, outcome, _ in rows]
    assert outcomes == [
        ("cas_login", "ok"),
        ("cas_validate", "ok"),
        ("cas_validate", "INVALID_TICKET"),
    ]
    assert all(f"client {client_id}" in (detail or "") for _, _, detail in rows)
    assert all(ticket[3:15] not in (detail or "") for _, _, detail in rows)
