"""Starting a session for an account that proved a phone by SMS code (SMS login, registration),
the way the login routes do (gateway/login.py): a new session, the old one dropped, and the
audit record in the same transaction."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from gateway import clock
from gateway.accounts import account_summary, get_accounts
from gateway.assurance import LOA_SMS, Assurance
from gateway.http import write_audit
from gateway.sessions import get_sessions
from gateway.storage.database import get_database
from gateway.storage.models import Account

# DESIGN.md "Assurance": an SMS code alone is ["sms"] at level 2.
SMS = Assurance(("sms",), LOA_SMS)


def start_session(
    account: Account, assurance: Assurance, *, status: int = 200, **extra: Any
) -> Response:
    now = clock.now()
    sessions = get_sessions()
    with get_database().connection():
        started = sessions.start(
            account.id,
            assurance.amr,
            acr=assurance.acr,
            at=now,
            previous_token=request.cookies.get(sessions.cookie_name),
        )
        write_audit("ok")
    summary = account_summary(account, get_accounts().shown_name(account))
    response = jsonify(
        {
            "ok": True,
            "account": {**summary, "real_name_level": account.real_name_level},
            "amr": list(assurance.amr),
            "acr": assurance.acr,
            "csrf_token": started.record.csrf_token,
            **extra,
        }
    )
    response.status_code = status
    sessions.set_cookie(response, started.token)
    return response
