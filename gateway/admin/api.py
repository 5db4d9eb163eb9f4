"""The console's JSON API under ``/admin/api`` (DESIGN.md "Operator console"): sign-in, trust
anchors and the mapping tester, accounts and operators' decisions, the real-name review queue,
enterprise roles, SSO clients, and the audit trail."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

import gateway.admin.console as console
from certs.errors import BadRequest
from gateway import clock
from gateway.admin.access import (
    AUDIT,
    CHANGE,
    READ,
    REVIEW,
    SELF,
    UNMASK,
    current_operator,
    note,
    operator_route,
)
from gateway.admin.errors import OperatorLocked
from gateway.admin.operators import get_operators
from gateway.errors import CredentialsInvalid
from gateway.http import address, begin_audit, check_origin, json_body, write_audit
from gateway.limits import get_guard

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")

MAX_NAME = 64
MAX_SECRET = 1024
MAX_REASON = 500
MAX_PEM = 256 * 1024


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def _reason(body: dict[str, Any], *, required: bool = True) -> str:
    reason = str(body.get("reason") or "").strip()
    if required and not reason:
        raise BadRequest("a reason is required")
    if len(reason) > MAX_REASON:
        raise BadRequest(f"reason: at most {MAX_REASON} characters")
    return reason


def _done(**answer: Any) -> Response:
    write_audit("ok")
    return jsonify({"ok": True, **answer})


# --- sign-in -------------------------------------------------------------------------------------


def _operator_key(name: str) -> str:
    return f"operator:{name.strip().lower()[:MAX_NAME]}"


@bp.post("/login")
def login() -> Response:
    """Password and TOTP code. Failures count per address and per operator name (known or
    not) with the login limits' atomic counters; the threshold locks the name."""
    context = begin_audit("operator_login", "console")
    check_origin()
    body = json_body({"name": str, "password": str, "totp": str})
    name, password, code = body["name"].strip(), body["password"], body["totp"].strip()
    if not 0 < len(name) <= MAX_NAME or not 0 < len(password) <= MAX_SECRET or len(code) > 16:
        raise BadRequest("name, password or totp has the wrong length")
    context.notes.append(f"operator {name}" if console.known_name(name) else "operator (unknown)")
    now = clock.now()
    guard = get_guard()
    operators = get_operators()
    key = _operator_key(name)
    with guard.attempt() as admissions:
        admissions.append(guard.admit_address(address(), now))
        locked_until = guard.locked_until(key, now)
        if locked_until is not None:
            raise OperatorLocked("operator sign-in locked", locked_until=locked_until)
        admissions.append(guard.admit_subject(key, now))
        operator = operators.get(name)
        if not operators.check(operator, password, code, at=now):
            until = guard.failed(key, now)
            if until is not None:
                raise OperatorLocked("operator sign-in locked", locked_until=until)
            raise CredentialsInvalid("wrong operator name, password or TOTP code")
        assert operator is not None
        guard.succeeded(admissions)
    token, csrf = operators.start(
        operator, at=now, previous=request.cookies.get(operators.cookie_name)
    )
    write_audit("ok")
    response = jsonify(
        {"ok": True, "operator": {"name": operator.name, "role": operator.role}, "csrf_token": csrf}
    )
    operators.set_cookie(response, token)
    return response


@bp.get("/session")
@operator_route(SELF, "operator_session")
def session_info() -> Response:
    signed_in = current_operator()
    return jsonify(
        {
            "ok": True,
            "operator": {"name": signed_in.name, "role": signed_in.role},
            "csrf_token": signed_in.csrf_token,
            "expires_at": _iso(signed_in.expires_at),
        }
    )


@bp.post("/logout")
@operator_route(SELF, "operator_logout")
def logout() -> Response:
    operators = get_operators()
    operators.end(current_operator())
    response = _done()
    operators.clear_cookie(response)
    return response


# --- trust anchors and the mapping tester ---------------------------------------------------------


@bp.get("/trust-anchors")
@operator_route(READ, "trust_anchors_read")
def trust_anchors() -> Response:
    return jsonify({"ok": True, "trust_anchors": console.trust_anchors()})


@bp.post("/trust-anchors")
@operator_route(CHANGE, "trust_anchor_added")
def add_trust_anchor() -> Response:
    body = json_body(
        {"pem": str},
        optional={
            "name": str,
            "revocation": str,
            "crl": list,
            "ocsp": str,
            "mapping": dict,
            "hardware_keys": bool,
        },
    )
    if len(body["pem"]) > MAX_PEM:
        raise BadRequest("pem: too long")
    listing = console.add_trust_anchor(body)
    g.certgate_audit.certificate_thumbprint = listing["sha256"]
    note(f"{listing['name']}; revocation {listing['revocation']}")
    return _done(trust_anchor=listing)


@bp.post("/trust-anchors/<thumbprint>/remove")
@operator_route(CHANGE, "trust_anchor_removed")
def remove_trust_anchor(thumbprint: str) -> Response:
    listing = console.remove_trust_anchor(thumbprint)
    g.certgate_audit.certificate_thumbprint = listing.thumbprint
    note(listing.name)
    return _done()


@bp.post("/trust-anchors/<thumbprint>/ocsp-check")
@operator_route(READ, "ocsp_checked")
def ocsp_check(thumbprint: str) -> Response:
    health = console.ocsp_health(thumbprint)
    note(f"{health['responder']}: {'reachable' if health['reachable'] else 'unreachable'}")
    return _done(ocsp=health)


@bp.post("/mapping/test")
@operator_route(READ, "mapping_tested")
def mapping_test() -> Response:
    body = json_body({"pem": str})
    if len(body["pem"]) > MAX_PEM:
        raise BadRequest("pem: too long")
    result = console.test_mapping(body["pem"])
    if result.get("thumbprint"):
        g.certgate_audit.certificate_thumbprint = result["thumbprint"]
    note(f"result {result['code']}")
    return _done(result=result)


# --- accounts ------------------------------------------------------------------------------------


@bp.get("/accounts")
@operator_route(READ, "accounts_searched")
def search_accounts() -> Response:
    query = request.args.get("q", "").strip()
    if len(query) > 200:
        raise BadRequest("q: too long")
    return jsonify({"ok": True, "accounts": console.search_accounts(query)})


@bp.post("/accounts/<public_id>/unmask")
@operator_route(UNMASK, "account_unmasked")
def unmask(public_id: str) -> Response:
    reason = _reason(json_body({"reason": str}))
    account = console.unmask(public_id)
    g.certgate_audit.account_public_id = account["id"]
    note(f"reason: {reason}")
    return _done(account=account)


@bp.post("/accounts/<public_id>/<decision>")
@operator_route(CHANGE, "account_decision")
def decide(public_id: str, decision: str) -> Response:
    if decision not in console.DECISIONS:
        raise BadRequest(f"unknown decision {decision!r}")
    reason = _reason(json_body({"reason": str}))
    g.certgate_audit.event = console.DECISION_EVENTS[decision]
    account, ended = console.decide(public_id, decision, reason, current_operator().name)
    g.certgate_audit.account_public_id = account["id"]
    note(f"{decision}; ended {ended} session(s); reason: {reason}")
    return _done(account=account)


# --- real-name review queue ---------------------------------------------------------------------


@bp.get("/reviews")
@operator_route(REVIEW, "reviews_read")
def reviews() -> Response:
    state = request.args.get("state", "pending")
    return jsonify({"ok": True, "reviews": console.reviews(state)})


@bp.post("/reviews/<int:review_id>/<decision>")
@operator_route(REVIEW, "real_name_review")
def decide_review(review_id: int, decision: str) -> Response:
    if decision not in ("approve", "reject"):
        raise BadRequest(f"unknown decision {decision!r}")
    reason = _reason(json_body({"reason": str}))
    review = console.decide_review(review_id, decision, reason, current_operator().name)
    g.certgate_audit.account_public_id = review["account"]["id"]
    note(f"{decision}d review {review_id}; reason: {reason}")
    return _done(review=review)


# --- enterprise roles ----------------------------------------------------------------------------


@bp.get("/enterprises/<public_id>/roles")
@operator_route(READ, "enterprise_roles_read")
def enterprise_roles(public_id: str) -> Response:
    return jsonify({"ok": True, **console.enterprise_roles(public_id)})


# --- SSO clients ---------------------------------------------------------------------------------


@bp.get("/clients")
@operator_route(READ, "sso_clients_read")
def clients() -> Response:
    return jsonify({"ok": True, "clients": console.list_clients()})


@bp.post("/clients")
@operator_route(CHANGE, "sso_client_added")
def add_client() -> Response:
    body = json_body(
        {"name": str, "protocol": str},
        optional={
            "redirect_uris": list,
            "post_logout_redirect_uris": list,
            "backchannel_logout_uri": str,
            "public": bool,
            "consent": str,
            "services": list,
        },
    )
    client, secret = console.add_client(body)
    note(f"client {client['client_id']} ({client['protocol']})")
    return _done(client=client, client_secret=secret)


@bp.post("/clients/<client_id>/rotate-secret")
@operator_route(CHANGE, "sso_client_secret_rotated")
def rotate_secret(client_id: str) -> Response:
    secret = console.rotate_client_secret(client_id)
    note(f"client {client_id}")
    return _done(client_id=client_id, client_secret=secret)


@bp.post("/clients/<client_id>/settings")
@operator_route(CHANGE, "sso_client_changed")
def client_settings(client_id: str) -> Response:
    body = json_body(
        {},
        optional={"consent": str, "post_logout_redirect_uris": list, "backchannel_logout_uri": str},
    )
    client = console.change_client(client_id, body)
    note(f"client {client_id}: {', '.join(sorted(body)) or 'nothing'} changed")
    return _done(client=client)


# --- audit trail --------------------------------------------------------------------------------


@bp.get("/audit")
@operator_route(AUDIT, "audit_read")
def audit_records() -> Response:
    return jsonify({"ok": True, "records": console.audit_records(request.args)})


@bp.post("/audit/verify")
@operator_route(AUDIT, "audit_verified")
def audit_verify() -> Response:
    body = json_body({}, optional={"checkpoint": str}) if request.content_length else {}
    verdict = console.verify_audit(body.get("checkpoint"))
    note(f"{verdict['records']} record(s), {len(verdict['problems'])} problem(s)")
    write_audit("ok")
    return jsonify(verdict)


@bp.post("/audit/export")
@operator_route(AUDIT, "audit_exported")
def audit_export() -> Response:
    body = json_body({}, optional={"from": int, "to": int})
    lines, first, last = console.export_audit(body.get("from"), body.get("to"))
    note(f"records {first}..{last}")
    write_audit("ok")
    response = Response("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    response.headers["Content-Type"] = "application/x-ndjson; charset=utf-8"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="certgate-audit-{first}-{last}.jsonl"'
    )
    return response
