"""Who may call which console route: a table of permissions by role, and the one decorator
every ``/admin/api`` route goes through (origin, operator session, CSRF on changes, role,
audit context naming the operator)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import g, request

from certs.errors import BadRequest
from gateway import clock
from gateway.admin.errors import Forbidden
from gateway.admin.models import ADMIN, AUDITOR, REVIEWER
from gateway.admin.operators import SignedInOperator, get_operators
from gateway.errors import NotSignedIn
from gateway.http import begin_audit, check_origin
from gateway.sessions import CSRF_HEADER

# What an action is -> the roles allowed to do it. An auditor reads and verifies, a reviewer
# decides real-name reviews, an admin does everything.
READ = "read"
CHANGE = "change"
REVIEW = "review"
AUDIT = "audit"
UNMASK = "unmask"
SELF = "self"  # one's own session
PERMISSIONS: Mapping[str, frozenset[str]] = {
    READ: frozenset({ADMIN, AUDITOR}),
    CHANGE: frozenset({ADMIN}),
    REVIEW: frozenset({ADMIN, REVIEWER}),
    AUDIT: frozenset({ADMIN, AUDITOR}),
    UNMASK: frozenset({ADMIN}),
    SELF: frozenset({ADMIN, AUDITOR, REVIEWER}),
}
EVENT_METHOD = "console"

RouteT = TypeVar("RouteT", bound=Callable[..., Any])


def current_operator() -> SignedInOperator:
    return g.certgate_operator


def note(text: str) -> None:
    """A fact for this action's audit record."""
    g.certgate_audit.notes.append(text)


def operator_route(action: str, event: str) -> Callable[[RouteT], RouteT]:
    """Checks, in order: Origin; an operator session (a user session is no operator session:
    401); on any POST the session's CSRF token in ``X-CSRF-Token``; the role. The audit record
    (event ``event``, method "console") names the operator."""
    allowed = PERMISSIONS[action]

    def wrap(route: RouteT) -> RouteT:
        @functools.wraps(route)
        def checked(*args: Any, **kwargs: Any) -> Any:
            context = begin_audit(event, EVENT_METHOD)
            check_origin()
            signed_in = get_operators().current(request, at=clock.now())
            if signed_in is None:
                g.certgate_skip_audit = request.method == "GET"
                raise NotSignedIn("no operator session")
            context.notes.append(f"operator {signed_in.name}")
            g.certgate_operator = signed_in
            if request.method != "GET":
                sent = request.headers.get(CSRF_HEADER, "")
                if not sent or not hmac.compare_digest(
                    sent.encode(), signed_in.csrf_token.encode()
                ):
                    raise BadRequest("missing or wrong CSRF token")
            if signed_in.role not in allowed:
                raise Forbidden(f"{action} needs one of {sorted(allowed)}", role=signed_in.role)
            # Reads are not audited one by one (the trail would fill with page loads); every
            # change, unmasking, test, verification and export is.
            if request.method == "GET":
                g.certgate_skip_audit = True
            return route(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return wrap
