"""A CAS-protected application: a CAS 3.0 client written against the protocol specification
(apereo.github.io/cas/development/protocol/CAS-Protocol-Specification.html), no CAS library.

- Sign in: redirect to ``<CAS>/login?service=<this application's service URL>``; CertGate
  sends the browser back with ``ticket=ST-…``.
- Validate: ``GET <CAS>/p3/serviceValidate?service=…&ticket=…``; the XML answer's
  ``cas:authenticationSuccess`` names the user and carries ``cas:attributes``.
- Single logout: CertGate POSTs a form field ``logoutRequest`` holding a SAML
  ``LogoutRequest`` whose ``SessionIndex`` is the service ticket the session began with; the
  session that ticket started ends. Such a POST is accepted at any path, as CAS clients do.
- Sign out: the local session ends and the browser goes to ``<CAS>/logout?service=…``.
"""

from __future__ import annotations

import logging
import secrets
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from urllib.parse import urlencode

import requests
from flask import Flask, Response, redirect, render_template_string, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from examples.session_store import ServerSideSessions

log = logging.getLogger("examples.cas_app")

CAS_NS = "http://www.yale.edu/tp/cas"
SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
MAX_XML_BYTES = 64 * 1024
VALIDATE_TIMEOUT = 10  # seconds


@dataclass(frozen=True)
class CasAppConfig:
    cas_url: str  # the CAS server's prefix, e.g. https://login.example.cn/cas
    public_url: str  # where browsers reach this application, without a trailing slash

    @property
    def service(self) -> str:
        """The service URL registered at CertGate (``--service``) and sent with every
        login and validation."""
        return self.public_url + "/cas/callback"


class CasResponseInvalid(Exception):
    """A validation answer or logout request this application cannot read."""


@dataclass(frozen=True)
class CasValidation:
    user: str | None
    attributes: dict[str, list[str]]
    failure_code: str | None = None


def _parse_xml(text: str) -> ElementTree.Element:
    """XML from the network: bounded, and no document type (no entities to expand)."""
    if len(text.encode("utf-8", "replace")) > MAX_XML_BYTES or "<!DOCTYPE" in text.upper():
        raise CasResponseInvalid("too large, or carries a document type")
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise CasResponseInvalid(f"not XML: {error}") from None


def parse_service_response(text: str) -> CasValidation:
    """``cas:serviceResponse`` → the user and attributes, or the failure code."""
    root = _parse_xml(text)
    if root.tag != f"{{{CAS_NS}}}serviceResponse":
        raise CasResponseInvalid("not a cas:serviceResponse")
    failure = root.find(f"{{{CAS_NS}}}authenticationFailure")
    if failure is not None:
        return CasValidation(None, {}, failure.get("code") or "UNKNOWN")
    success = root.find(f"{{{CAS_NS}}}authenticationSuccess")
    user = success.findtext(f"{{{CAS_NS}}}user") if success is not None else None
    if success is None or not user:
        raise CasResponseInvalid("neither success with a user nor failure")
    attributes: dict[str, list[str]] = {}
    block = success.find(f"{{{CAS_NS}}}attributes")
    for element in block if block is not None else ():
        name = element.tag.split("}", 1)[-1]
        attributes.setdefault(name, []).append((element.text or "").strip())
    return CasValidation(user.strip(), attributes)


def parse_logout_request(text: str) -> str:
    """The service ticket named by a SAML ``LogoutRequest``'s ``SessionIndex``."""
    root = _parse_xml(text)
    if root.tag != f"{{{SAMLP_NS}}}LogoutRequest":
        raise CasResponseInvalid("not a samlp:LogoutRequest")
    ticket = (root.findtext(f"{{{SAMLP_NS}}}SessionIndex") or "").strip()
    if not ticket:
        raise CasResponseInvalid("no SessionIndex")
    return ticket


def _words(values: list[str]) -> list[str]:
    """A multi-valued attribute, whether sent as repeated elements or one spaced value."""
    return [word for value in values for word in value.split()]


PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>示例应用（CAS）</title>
<style>body{font-family:sans-serif;max-width:40rem;margin:2rem auto}dt{font-weight:bold}</style>
</head><body>
<h1>示例应用 · CAS</h1>
{% if error %}<p role="alert" id="error">{{ error }}</p>{% endif %}
{% if user %}
<p id="signed-in">已登录 / Signed in</p>
<dl>
  <dt>用户 user</dt><dd id="cas-user">{{ user.user }}</dd>
  <dt>名称 name</dt><dd id="account-name">{{ user.name }}</dd>
  <dt>账户类型 account_kind</dt><dd id="account-kind">{{ user.account_kind }}</dd>
  <dt>统一社会信用代码 uscc</dt><dd id="uscc">{{ user.uscc or "—" }}</dd>
  <dt>认证级别 acr</dt><dd id="acr">{{ user.acr }}</dd>
  <dt>认证方式 amr</dt><dd id="amr">{{ user.amr | join(" ") or "—" }}</dd>
</dl>
<details><summary>全部属性 / All attributes</summary><dl id="attributes">
{% for name, values in user.attributes.items() %}
  <dt>{{ name }}</dt><dd>{{ values | join(", ") }}</dd>
{% endfor %}
</dl></details>
<form method="post" action="{{ url_for('logout') }}">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <button type="submit" id="logout">退出 / Sign out</button>
</form>
{% else %}
<p id="signed-out">未登录 / Not signed in</p>
<p><a id="login" href="{{ url_for('login') }}">通过 CertGate 登录 / Sign in with CertGate</a></p>
{% endif %}
</body></html>
"""


def _first(attributes: dict[str, list[str]], name: str) -> str | None:
    values = attributes.get(name) or []
    return values[0] if values else None


def create_app(config: CasAppConfig, *, secret_key: str | None = None) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret_key or secrets.token_hex(32)
    app.config["SESSION_COOKIE_SECURE"] = config.public_url.startswith("https:")
    sessions = ServerSideSessions("cas_app_session")
    app.session_interface = sessions
    app.extensions["examples.cas_app"] = {"sessions": sessions}
    http = requests.Session()

    def page(error: str | None = None, status: int = 200) -> Response:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(16)
        body = render_template_string(
            PAGE, user=session.get("user"), error=error, csrf=session["csrf"]
        )
        return Response(body, status=status, content_type="text/html; charset=utf-8")

    @app.before_request
    def single_logout() -> Response | None:
        """CertGate's single logout: a form POST with ``logoutRequest``, at any path."""
        if request.method != "POST" or "logoutRequest" not in request.form:
            return None
        try:
            ticket = parse_logout_request(request.form["logoutRequest"])
        except CasResponseInvalid as error:
            log.warning("logout request refused: %s", error)
            return Response("", status=400)
        ended = sessions.end_where(lambda data: data.get("ticket") == ticket)
        log.info("single logout: %d session(s) ended", ended)
        return Response("", status=200)

    @app.get("/")
    def home() -> Response:
        return page()

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/login")
    def login() -> BaseResponse:
        return redirect(f"{config.cas_url}/login?" + urlencode({"service": config.service}))

    @app.get("/cas/callback")
    def callback() -> BaseResponse:
        ticket = request.args.get("ticket", "")
        if not ticket.startswith("ST-"):
            return page("缺少服务票据 / No service ticket", status=400)
        try:
            answer = http.get(
                f"{config.cas_url}/p3/serviceValidate",
                params={"service": config.service, "ticket": ticket},
                timeout=VALIDATE_TIMEOUT,
            )
            answer.raise_for_status()
            validation = parse_service_response(answer.text)
        except (requests.RequestException, CasResponseInvalid) as error:
            log.warning("ticket validation failed: %s", type(error).__name__)
            return page("票据验证失败 / The ticket could not be validated", status=502)
        if validation.failure_code is not None:
            log.info("ticket refused by the CAS server: %s", validation.failure_code)
            return page(f"票据无效 / Ticket refused: {validation.failure_code}", status=401)
        attributes = validation.attributes
        session.clear()
        session["ticket"] = ticket
        session["user"] = {
            "user": validation.user,
            "name": _first(attributes, "name"),
            "account_kind": _first(attributes, "account_kind"),
            "uscc": _first(attributes, "uscc"),
            "acr": _first(attributes, "acr"),
            "amr": _words(attributes.get("amr", [])),
            "attributes": attributes,
        }
        log.info("signed in: user %s", validation.user)
        return redirect(url_for("home"))

    @app.post("/logout")
    def logout() -> BaseResponse:
        if not secrets.compare_digest(request.form.get("csrf", ""), session.get("csrf", "")):
            return page("请重试 / Please try again", status=400)
        session.clear()
        return redirect(f"{config.cas_url}/logout?" + urlencode({"service": config.public_url}))

    return app
