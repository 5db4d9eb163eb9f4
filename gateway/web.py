"""The web pages: login (USB key / certificate, password), account, service agreement.

Templates, JavaScript modules, CSS and translations live in the ``web`` package (no build step).
Pages are zh-CN unless the person switches to English (``?lang=en``, remembered in a cookie).
Each page carries a strict Content-Security-Policy: scripts and styles from the gateway only, no
inline script, and ``connect-src`` limited to the gateway and the local signing agent
(``AGENT_URL``, environment ``CERTGATE_AGENT_URL``), so the PIN can only go to the agent.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

import web
from gateway import account_api, clock
from gateway.accounts import account_is_usable, get_accounts
from gateway.assurance import LEVELS as ASSURANCE_LEVELS
from gateway.config import ConfigError
from gateway.sessions import get_sessions

WEB_ROOT = Path(web.__file__).resolve().parent
TRANSLATIONS = WEB_ROOT / "translations"
LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
LANGUAGE_COOKIE = "certgate_lang"
# tokens.agent.DEFAULT_PORT: where `certgate agent serve` listens unless told otherwise.
DEFAULT_AGENT_URL = "http://127.0.0.1:21790"
AGENT_URL_KEY = "AGENT_URL"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")

bp = Blueprint(
    "web",
    __name__,
    template_folder=str(WEB_ROOT / "templates"),
    static_folder=str(WEB_ROOT / "static"),
    static_url_path="/assets",  # the app keeps its own (unused) /static rule
)


@cache
def translations(language: str) -> dict[str, str]:
    """The page texts of ``language``: ``translations/<language>.json`` and a capability's own
    ``translations/<capability>/<language>.json`` (single sign-on keeps its texts there)."""
    table: dict[str, str] = {}
    for path in [
        TRANSLATIONS / f"{language}.json",
        *sorted(TRANSLATIONS.glob(f"*/{language}.json")),
    ]:
        with path.open(encoding="utf-8") as handle:
            table.update(json.load(handle))
    return table


# Where the login page may send the browser after a successful login: a path on this origin.
MAX_NEXT_LENGTH = 4096


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a relative path on this origin, else None (no open redirect).

    Refused: anything with a scheme or host (``https://evil``, ``//evil``), a backslash (which
    browsers read as a slash: ``/\\evil``), control characters or spaces, and over-long values."""
    if not value or len(value) > MAX_NEXT_LENGTH or not value.startswith("/"):
        return None
    if value.startswith("//") or "\\" in value:
        return None
    if any(ord(character) <= 0x20 or ord(character) == 0x7F for character in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def page_language() -> str:
    chosen = request.args.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def agent_url(app: Flask | None = None) -> str:
    return str((app or current_app).config.get(AGENT_URL_KEY) or DEFAULT_AGENT_URL).rstrip("/")


def check_agent_url(value: str) -> str:
    """The agent's origin; ConfigError unless it is an http loopback origin (the agent binds
    127.0.0.1 only and refuses other Host headers)."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if (
        parts.scheme != "http"
        or parts.hostname not in LOOPBACK_HOSTS
        or port is None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ConfigError(
            f"agent_url: {value!r} is not an http://127.0.0.1:PORT or http://localhost:PORT origin"
        )
    return f"http://{parts.hostname}:{port}"


def content_security_policy() -> str:
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' {agent_url()}",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _signed_in() -> bool:
    record = get_sessions().current(request, at=clock.now())
    if record is None:
        return False
    account = get_accounts().get(record.account_id)
    return account is not None and account_is_usable(account)


def _page(template: str, **context: Any) -> Response:
    language = page_language()
    table = translations(language)
    other = "en" if language == DEFAULT_LANGUAGE else DEFAULT_LANGUAGE
    response = make_response(
        render_template(
            template,
            lang=language,
            other_lang=other,
            t=lambda key: table.get(key, key),
            i18n=table,
            agent_url=agent_url(),
            public_origin=current_app.config["PUBLIC_ORIGIN"],
            agreement_version=account_api.agreement_version(),
            **context,
        )
    )
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Content-Security-Policy"] = content_security_policy()
    if request.args.get("lang") in LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=365 * 24 * 3600,
            path="/",
            secure=True,
            httponly=True,
            samesite="Lax",
        )
    return response


@bp.get("/")
def index() -> BaseResponse:
    return redirect(url_for("web.account_page" if _signed_in() else "web.login_page"))


@bp.get("/login")
def login_page() -> BaseResponse:
    # With ``next`` (single sign-on asking for a login, or a stronger one) the form is shown
    # even to a signed-in person; the page returns there after any successful login.
    next_url = safe_next(request.args.get("next"))
    if next_url is None and _signed_in():
        return redirect(url_for("web.account_page"))
    level = request.args.get("acr", "")
    return _page(
        "login.html",
        reason=request.args.get("reason", ""),
        next_url=next_url or "",
        next_level=level if next_url and level in ASSURANCE_LEVELS[1:] else "",
    )


def render_page(template: str, **context: Any) -> Response:
    """A page of the gateway's look (base template, language, Content-Security-Policy)."""
    return _page(template, **context)


@bp.get("/account")
def account_page() -> BaseResponse:
    if not _signed_in():
        return redirect(url_for("web.login_page"))
    return _page("account.html")


@bp.get("/agreement")
def agreement_page() -> Response:
    return _page("agreement.html")


def init_app(app: Flask) -> None:
    app.config[AGENT_URL_KEY] = check_agent_url(agent_url(app))
    for language in LANGUAGES:
        translations(language)  # a broken translation file stops start-up, not a request
    app.register_blueprint(bp)
    account_api.init_app(app)
