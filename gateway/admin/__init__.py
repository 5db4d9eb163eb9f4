"""The operator console (DESIGN.md "Operator console"): operator accounts with roles (admin,
auditor, reviewer), sign-in with password and TOTP, their own sessions, and ``/admin/`` with its
JSON API under ``/admin/api`` over trust anchors, accounts, the real-name review queue,
enterprise roles, SSO clients and the audit trail. Every operator action is audited with the
operator's name.

``init_app(app)`` is the one entry the app factory calls, after accounts, sessions, limits,
the web pages and single sign-on exist. Imports stay inside it so that importing the models (the
schema checks do) loads nothing else.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from gateway.accounts import get_accounts
    from gateway.admin import api, operators, pages, review
    from gateway.storage.database import get_database

    operators.init_app(app, get_database(app), get_accounts(app).cipher)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(review.bp)
