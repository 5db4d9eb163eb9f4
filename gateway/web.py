"""The web pages: login (USB key / certificate, password), account, service agreement, privacy
policy.

Templates, JavaScript modules, CSS and translations live in the ``web`` package (no build step).
Pages are zh-CN unless the person switches to English (``?lang=en``, remembered in a cookie).
Each page carries a strict Content-Security-Policy: scripts and styles from the gateway only, no
inline script, and ``connect-src`` limited to the gateway and the local signing agent
(``AGENT_URL``, environment ``CERTGATE_AGENT_URL``), so the PIN can only go to the agent.
"""

from __future__ import annotations

import json
import zoneinfo
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
DISPLAY_TIME_ZONE_KEY = "DISPLAY_TIME_ZONE"
AGENT_DOWNLOAD_URL_KEY = "AGENT_DOWNLOAD_URL"
PRIVACY_POLICY_KEY = "PRIVACY_POLICY_FILE"
PRIVACY_POLICY_EXTENSION = "certgate.privacy_policy"
# The bundled privacy policy: a template for the operator to replace (privacy_policy_file).
POLICIES = WEB_ROOT / "templates" / "policies"
MAX_POLICY_CHARACTERS = 200_000

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


def _source(app: Flask, key: str) -> str:
    source = app.config.get("CONFIG_SOURCE", {}).get(key, "configuration")
    return f"{source}: {key.lower()}"


def check_display_time_zone(app: Flask) -> str:
    """The IANA time zone the pages show times in; ConfigError unless this machine's time-zone
    database knows it (the browsers' does too: both follow the IANA database)."""
    value = app.config.get(DISPLAY_TIME_ZONE_KEY)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_source(app, DISPLAY_TIME_ZONE_KEY)}: must name a time zone")
    try:
        zoneinfo.ZoneInfo(value.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{_source(app, DISPLAY_TIME_ZONE_KEY)}: {value!r} is not an IANA time zone "
            "such as Asia/Shanghai or UTC"
        ) from None
    return value.strip()


def check_agent_download_url(app: Flask) -> str | None:
    """An http(s) URL for the certificate helper's installer, or None."""
    value = app.config.get(AGENT_DOWNLOAD_URL_KEY)
    if value is None or value == "":
        return None
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{_source(app, AGENT_DOWNLOAD_URL_KEY)}: must be an http(s) URL")
    return str(value)


def _read_policy(path: Path, where: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read {path} as UTF-8 text: {exc}") from None
    if not text.strip() or len(text) > MAX_POLICY_CHARACTERS:
        raise ConfigError(f"{where}: {path} is empty or over {MAX_POLICY_CHARACTERS} characters")
    return text


def load_privacy_policy(app: Flask) -> dict[str, str] | None:
    """The operator's privacy policy (``privacy_policy_file``), read once at start-up; None
    when the bundled template is shown."""
    configured = app.config.get(PRIVACY_POLICY_KEY)
    if not configured:
        return None
    return {"text": _read_policy(Path(str(configured)), _source(app, PRIVACY_POLICY_KEY))}


@cache
def bundled_privacy_policy(language: str) -> str:
    return _read_policy(POLICIES / f"privacy-policy.{language}.txt", "web/templates/policies")


def policy_blocks(text: str) -> list[tuple[str, str]]:
    """A policy text as ``(kind, text)`` blocks: a line starting with ``#`` is a heading, every
    other non-empty line a paragraph (the page escapes both)."""
    blocks = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            blocks.append(("heading", line.lstrip("#").strip()))
        elif line:
            blocks.append(("paragraph", line))
    return blocks


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
            time_zone=current_app.config[DISPLAY_TIME_ZONE_KEY],
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
        agent_download_url=current_app.config[AGENT_DOWNLOAD_URL_KEY],
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


@bp.get("/privacy")
def privacy_page() -> Response:
    operator = current_app.extensions[PRIVACY_POLICY_EXTENSION]
    language = page_language()
    text = operator["text"] if operator else bundled_privacy_policy(language)
    return _page(
        "privacy.html",
        policy_blocks=policy_blocks(text),
        policy_is_template=operator is None,
        policy_lang="" if operator else language,
    )


def init_app(app: Flask) -> None:
    app.config[AGENT_URL_KEY] = check_agent_url(agent_url(app))
    app.config[DISPLAY_TIME_ZONE_KEY] = check_display_time_zone(app)
    app.config[AGENT_DOWNLOAD_URL_KEY] = check_agent_download_url(app)
    app.extensions[PRIVACY_POLICY_EXTENSION] = load_privacy_policy(app)
    for language in LANGUAGES:
        translations(language)  # a broken translation file stops start-up, not a request
        bundled_privacy_policy(language)
    app.register_blueprint(bp)
    account_api.init_app(app)
