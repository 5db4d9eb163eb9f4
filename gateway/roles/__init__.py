"""Enterprise roles (Agreement 2 §3.2.3; DESIGN.md "Enterprise roles"): a legal representative
who signs in as a person with real-name level 2 acts for the enterprises they represent; an
enterprise authorises staff (经办人) for a period, and the person accepts.

- ``roles.py``: who holds which role, computed from the records on every check; the legal
  representative on the enterprise's record;
- ``staff.py``: invitations, staff, revoking and leaving (``/api/v1/enterprise/staff``,
  ``/api/v1/account/invitations``, ``/api/v1/account/roles``);
- ``acting.py``: ``POST /api/v1/session/act-as``, the role checked again on every request while
  acting, ``acting_for`` in the session, the pages' banner, the audit trail and single sign-on;
- ``models.py``: the tables (revision 0013).

``init_app(app)`` is the one entry the app factory calls, after sessions, the pages, single
sign-on and the account's life (notices). Imports stay inside it so that importing the models
(the schema checks do) loads nothing else.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from gateway.roles import acting, roles, staff

    roles.init_app(app)
    acting.init_app(app)
    staff.init_app(app)
