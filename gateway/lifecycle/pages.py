"""The pages of the account's life: registration (person / enterprise tabs), password reset,
the consent page a session waiting for consent is sent to, and the in-site messages page. They
use the templates, assets and translations of the ``web`` package like the login and account
pages (docs/web.md)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response

from gateway.web import _page

bp = Blueprint("lifecycle_pages", __name__)


@bp.get("/register")
def register_page() -> Response:
    return _page("register.html")


@bp.get("/password/reset")
def reset_page() -> Response:
    return _page("reset.html")


@bp.get("/consent")
def consent_page() -> Response:
    return _page("consent.html")


@bp.get("/messages")
def messages_page() -> Response:
    """In-site messages; the page's script sends a visitor without a session to sign in."""
    return _page("messages.html")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
