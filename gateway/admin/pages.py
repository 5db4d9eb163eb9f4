"""The console's page at ``/admin/``: one server-rendered template (web/templates/admin.html)
with the user pages' look, languages and Content-Security-Policy; web/static/js/admin.js calls
``/admin/api`` with the operator session's CSRF token."""

from __future__ import annotations

from flask import Blueprint, Response

from gateway.web import render_page

bp = Blueprint("admin_pages", __name__)


@bp.get("/admin/")
def console_page() -> Response:
    return render_page("admin.html")
