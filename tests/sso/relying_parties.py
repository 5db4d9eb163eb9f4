"""Stand-ins for the applications single sign-on serves, written from the specifications only:
a CAS 3.0 client and an HTTP server that receives back-channel and CAS logout messages."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import requests

from tests.sso.conftest import Browser, Gateway, query_of

CAS_NS = {"cas": "http://www.yale.edu/tp/cas"}
SAML_NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
}


@dataclass
class Received:
    path: str
    content_type: str
    form: dict[str, str]


@dataclass
class LogoutReceiver:
    """An application's server: records every POST; ``status`` is what it answers."""

    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200

    def forms(self, name: str) -> list[str]:
        return [r.form[name] for r in self.received if name in r.form]


@contextmanager
def logout_receiver() -> Iterator[LogoutReceiver]:
    receiver = LogoutReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8")
            form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
            receiver.received.append(
                Received(self.path, self.headers.get("Content-Type", ""), form)
            )
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def closed_port_url() -> str:
    """An address where nothing listens (connection refused): a client that is down."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- a CAS client -------------------------------------------------------------------------------


def cas_ticket(gateway: Gateway, browser: Browser, service: str, **params: str) -> str:
    """Send the browser to /cas/login for ``service``; the ticket it comes back with."""
    answer = browser.get("/cas/login", service=service, **params)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(service), location
    ticket = query_of(location)["ticket"]
    assert ticket.startswith("ST-")
    return ticket


@dataclass
class CasAnswer:
    user: str | None
    attributes: dict[str, str]  # each attribute's first value
    failure_code: str | None
    failure_text: str | None
    values: dict[str, list[str]] = field(default_factory=dict)  # every value, in order


def cas_validate(
    gateway: Gateway, service: str, ticket: str, *, p3: bool = True, **params: str
) -> CasAnswer:
    """What a CAS client does with a ticket: serviceValidate, and read the XML answer."""
    path = "/cas/p3/serviceValidate" if p3 else "/cas/serviceValidate"
    answer = requests.get(
        gateway.url + path, params={"service": service, "ticket": ticket, **params}, timeout=10
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(answer.content)
    assert root.tag == "{http://www.yale.edu/tp/cas}serviceResponse"
    failure = root.find("cas:authenticationFailure", CAS_NS)
    if failure is not None:
        return CasAnswer(None, {}, failure.get("code"), (failure.text or "").strip())
    success = root.find("cas:authenticationSuccess", CAS_NS)
    assert success is not None
    user = success.findtext("cas:user", namespaces=CAS_NS)
    values: dict[str, list[str]] = {}
    found = success.find("cas:attributes", CAS_NS)
    if found is not None:
        for element in found:
            values.setdefault(element.tag.split("}", 1)[1], []).append(element.text or "")
    attributes = {name: every[0] for name, every in values.items()}
    return CasAnswer(user, attributes, None, None, values)


def saml_session_index(logout_request: str) -> tuple[str, str]:
    """(NameID, SessionIndex) of a SAML LogoutRequest, as a CAS client reads them."""
    root = ET.fromstring(logout_request)
    assert root.tag == "{urn:oasis:names:tc:SAML:2.0:protocol}LogoutRequest"
    assert root.get("Version") == "2.0" and root.get("ID") and root.get("IssueInstant")
    name_id = root.findtext("saml:NameID", namespaces=SAML_NS)
    index = root.findtext("samlp:SessionIndex", namespaces=SAML_NS)
    assert name_id is not None and index is not None
    return name_id, index


def csrf_post(browser: Browser, path: str, body: Any) -> requests.Response:
    session = browser.session.get(
        browser.origin + "/api/v1/session", headers=browser.cookie_header(), timeout=10
    )
    token = session.json()["csrf_token"]
    return browser.session.post(
        browser.origin + path,
        json=body,
        headers={"Origin": browser.origin, "X-CSRF-Token": token, **browser.cookie_header()},
        timeout=10,
    )
