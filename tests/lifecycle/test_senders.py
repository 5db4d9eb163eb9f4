"""Delivery through a real SMTP server (aiosmtpd) and a real local HTTP SMS gateway, and the
sender settings checked at start-up."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gateway.config import ConfigError
from tests.lifecycle.conftest import PHONE, post_json

SECRET = "shared-secret-of-the-sms-gateway"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


@pytest.fixture
def sms_gateway() -> Iterator[tuple[str, list[tuple[Any, dict[str, Any]]]]]:
    received: list[tuple[Any, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers["Content-Length"])
            received.append((self.headers, json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status": "queued"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/send", received
    finally:
        server.shutdown()
        server.server_close()


def test_email_codes_reach_the_smtp_server(make_app, smtp_server) -> None:
    controller, mailbox = smtp_server
    port = controller.port
    client = make_app(
        NOTIFY_EMAIL=f"smtp://127.0.0.1:{port}", NOTIFY_EMAIL_FROM="noreply@login.example.cn"
    ).test_client()
    answer = post_json(
        client, "/api/v1/codes", {"channel": "email", "to": "li@example.cn", "purpose": "verify"}
    )
    assert answer.status_code == 200
    [envelope] = mailbox.messages
    assert envelope.rcpt_tos == ["li@example.cn"]
    assert envelope.mail_from == "noreply@login.example.cn"
    mail = message_from_bytes(envelope.content)
    assert "验证码" in str(make_header(decode_header(mail["Subject"])))
    body = mail.get_payload(decode=True).decode()
    assert "5 分钟内有效" in body


def test_sms_codes_reach_the_http_gateway_with_the_secret(make_app, sms_gateway) -> None:
    url, received = sms_gateway
    client = make_app(NOTIFY_SMS=url, NOTIFY_SMS_SECRET=SECRET).test_client()
    answer = post_json(
        client, "/api/v1/codes", {"channel": "sms", "to": PHONE, "purpose": "register"}
    )
    assert answer.status_code == 200
    [(headers, body)] = received
    assert headers["X-CertGate-Secret"] == SECRET
    assert body["to"] == PHONE and body["purpose"] == "register"
    assert body["code"] in body["text"] and len(body["code"]) == 6


def test_a_failed_delivery_is_logged_without_secrets_and_answered_alike(
    make_app, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(
        NOTIFY_SMS="http://127.0.0.1:9/send", NOTIFY_SMS_SECRET=SECRET, NOTIFY_TIMEOUT=2
    ).test_client()
    answer = post_json(
        client, "/api/v1/codes", {"channel": "sms", "to": PHONE, "purpose": "register"}
    )
    assert answer.status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "not delivered" in logged
    assert SECRET not in logged and PHONE not in logged


def test_smtp_credentials_are_never_logged(make_app, smtp_server, caplog) -> None:
    controller, _ = smtp_server
    port = controller.port
    client = make_app(
        NOTIFY_EMAIL=f"smtp://mailer:pa55-word-secret@127.0.0.1:{port}",
        NOTIFY_EMAIL_FROM="noreply@login.example.cn",
    ).test_client()
    # The test server offers no STARTTLS: the password is not sent in clear, delivery fails.
    answer = post_json(
        client, "/api/v1/codes", {"channel": "email", "to": "li@example.cn", "purpose": "verify"}
    )
    assert answer.status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "STARTTLS" in logged
    assert "pa55-word-secret" not in logged


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"NOTIFY_SMS": "carrier-pigeon:x"}, "notify_sms"),
        ({"NOTIFY_SMS": "http://sms.example.cn/send"}, "notify_sms_secret"),
        (
            {"NOTIFY_SMS": "http://sms.example.cn/send", "NOTIFY_SMS_SECRET": "short"},
            "notify_sms_secret",
        ),
        ({"NOTIFY_EMAIL": "smtp://mail.example.cn"}, "notify_email"),
        ({"NOTIFY_EMAIL": "smtp://mail.example.cn:25"}, "notify_email_from"),
        ({"NOTIFY_EMAIL": "outbox:"}, "notify_email"),
        ({"CODE_RESEND_SECONDS": 0}, "code_resend_seconds"),
        ({"CODE_DAILY_LIMIT": "ten"}, "code_daily_limit"),
    ],
)
def test_bad_sender_settings_stop_start_up(make_app, overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make_app(**overrides)


def test_smtp_password_is_not_in_the_config_error(make_app) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app(NOTIFY_EMAIL="smtp://user:hunter2-secret@mail.example.cn")
    assert "hunter2-secret" not in str(raised.value)


def test_dev_mode_defaults_to_an_outbox(make_app, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(DEV_MODE=True, NOTIFY_SMS=None, NOTIFY_EMAIL=None)
    assert app.config["NOTIFY_SMS"] == "outbox:certgate-outbox.jsonl"
