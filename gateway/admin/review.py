"""A signed-in person asks for real-name level 2 (checked by a reviewer against documents or in
person): ``POST /api/v1/account/real-name-review {"note"?}`` with the session's CSRF token.
One open request per account; asking again answers the open one."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from certs.errors import BadRequest
from gateway import clock
from gateway.accounts import account_is_usable, get_accounts
from gateway.admin.models import PENDING, RealNameReview
from gateway.errors import NotSignedIn
from gateway.http import begin_audit, check_origin, json_body, write_audit
from gateway.sessions import get_sessions
from gateway.storage.database import get_database

bp = Blueprint("admin_review_request", __name__, url_prefix="/api/v1/account")
MAX_NOTE = 500


@bp.post("/real-name-review")
def ask_for_review() -> Response:
    context = begin_audit("real_name_review_requested")
    check_origin()
    now = clock.now()
    sessions = get_sessions()
    record = sessions.current(request, at=now)
    if record is None:
        raise NotSignedIn("no live session")
    account = get_accounts().get(record.account_id)
    if account is None or not account_is_usable(account):
        raise NotSignedIn("the account of this session can no longer sign in")
    context.account_public_id = account.public_id
    if not sessions.csrf_ok(record, request):
        raise BadRequest("missing or wrong CSRF token")
    body = json_body({}, optional={"note": str}) if request.content_length else {}
    note = (body.get("note") or "").strip()
    if len(note) > MAX_NOTE:
        raise BadRequest(f"note: at most {MAX_NOTE} characters")
    if account.real_name_level >= 2:
        raise BadRequest("the account already has real-name level 2 or higher")
    with get_database().session() as session:
        open_request = session.scalars(
            select(RealNameReview).where(
                RealNameReview.account_id == account.id, RealNameReview.state == PENDING
            )
        ).first()
        if open_request is None:
            open_request = RealNameReview(
                account_id=account.id, state=PENDING, note=note or None, requested_at=now
            )
            session.add(open_request)
            session.flush()
        review_id = open_request.id
    write_audit("ok", detail=f"review {review_id}")
    return jsonify({"ok": True, "review": {"id": review_id, "state": PENDING}})
