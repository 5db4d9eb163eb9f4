"""After a successful login or registration answer: the agreement the account still has to
accept, and the security notice for a device or address not seen before.

One ``after_request`` hook over the login and registration answers, so every login route
(certificate, password, SMS) is covered in one place. It reads the answer's JSON once and does
its database work in one unit of work on the Core connection: the account's id, its last
consent and the newest agreement version in one statement, then the known sign-in sources.
Two hooks with their own units of work cost a certificate login more than its own statements
(bench/bench_scale.py: 12 of a login's 18 PostgreSQL round trips). The notice itself (an
in-site message and maybe an SMS or e-mail) is posted after that unit of work has committed.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request
from sqlalchemy import bindparam, select

from gateway import clock
from gateway.http import address
from gateway.lifecycle.agreements import LOGIN_ENDPOINTS, get_agreements, newest_version
from gateway.lifecycle.notices import REGISTRATION_ENDPOINTS, get_notices
from gateway.storage.database import get_database
from gateway.storage.models import Account
from gateway.storage.prepared import Prepared

ANSWER_ENDPOINTS = LOGIN_ENDPOINTS | REGISTRATION_ENDPOINTS

_SIGNED_IN = Prepared(
    select(Account.id, Account.agreement_version, newest_version()).where(
        Account.public_id == bindparam("public_id")
    )
)


def after_sign_in(response: Response) -> Response:
    if request.endpoint not in ANSWER_ENDPOINTS or response.status_code not in (200, 201):
        return response
    try:
        body = json.loads(response.get_data())
        public_id = body["account"]["id"]
    except (ValueError, KeyError, TypeError):
        return response
    if not isinstance(public_id, str):
        return response
    notices = get_notices()
    now = clock.now()
    with get_database().connection() as connection:
        row = _SIGNED_IN.execute(connection, {"public_id": public_id}).one_or_none()
        if row is None:
            return response
        new_source = notices.note_sign_in(
            row.id,
            device=request.headers.get("User-Agent", ""),
            client=address(),
            at=now,
        )
    # A login's answer names the agreement its account still has to accept.
    if (
        request.endpoint in LOGIN_ENDPOINTS
        and response.status_code == 200
        and body.get("ok") is True
        and row.newest is not None
        and row.agreement_version != row.newest
    ):
        pending = get_agreements().pending(row.agreement_version)
        if pending is not None:
            body["consent_required"] = pending.to_api()
            response.set_data(json.dumps(body, ensure_ascii=False))
    if new_source:
        notices.post(row.id, "sign_in_new_source", at=now)
    return response


def init_app(app: Flask) -> None:
    app.after_request(after_sign_in)
