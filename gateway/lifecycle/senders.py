"""SMS and e-mail behind one interface: a development outbox, an HTTP SMS gateway, SMTP.

``notify_sms`` and ``notify_email`` (gateway/config.py) name the sender of each channel:

- ``outbox:PATH`` appends one JSON object per line, ``{"channel", "to", "purpose", "code",
  "text", "sent_at"}``, and sends nothing: a development outbox (the gateway says so once at
  start-up).
- ``http://...`` / ``https://...`` (SMS): POSTs ``{"to", "text", "purpose", "code"}`` as JSON to a
  generic SMS gateway, with the shared secret ``notify_sms_secret`` in ``X-CertGate-Secret``.
- ``smtp://[user:pass@]host:port`` (STARTTLS when the server offers it; credentials only over
  TLS) and ``smtps://...`` (TLS from the first byte), e-mail from ``notify_email_from``.

A failed delivery raises ``DeliveryFailed`` with the cause and never the message's text, code
or destination.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

SMS = "sms"
EMAIL = "email"
CHANNELS = (SMS, EMAIL)
SECRET_HEADER = "X-CertGate-Secret"


class DeliveryFailed(Exception):
    """The sender could not hand the message over; the text says why (no personal data)."""


@dataclass(frozen=True)
class Message:
    channel: str
    to: str
    purpose: str
    text: str
    code: str | None = None
    subject: str = ""


class Sender(Protocol):
    #: True when messages are only written down, not delivered (a development outbox).
    development: bool

    def send(self, message: Message, *, at: datetime) -> None: ...

    def describe(self) -> str:
        """What the sender is, for the start-up log: no password or secret."""


class OutboxSender:
    development = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, message: Message, *, at: datetime) -> None:
        line = json.dumps(
            {
                "channel": message.channel,
                "to": message.to,
                "purpose": message.purpose,
                **({"code": message.code} if message.code is not None else {}),
                "text": message.text,
                "sent_at": at.isoformat().replace("+00:00", "Z"),
            },
            ensure_ascii=False,
        )
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            raise DeliveryFailed(f"outbox {self.path}: {exc.strerror or exc}") from None

    def describe(self) -> str:
        return f"development outbox {self.path}"


class HttpSmsSender:
    development = False

    def __init__(self, url: str, *, secret: str, timeout: float) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def send(self, message: Message, *, at: datetime) -> None:
        body = json.dumps(
            {
                "to": message.to,
                "text": message.text,
                "purpose": message.purpose,
                "code": message.code,
            },
            ensure_ascii=False,
        ).encode("utf-8")
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", SECRET_HEADER: self.secret},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read(4096)
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"SMS gateway answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryFailed(f"SMS gateway not reached: {reason}") from None

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"SMS gateway {parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )


class SmtpSender:
    development = False

    def __init__(self, url: str, *, sender: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or ""
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = sender
        self.timeout = timeout

    def send(self, message: Message, *, at: datetime) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail.set_content(message.text)
        context = ssl.create_default_context()
        try:
            if self.implicit_tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if not self.implicit_tls:
                    client.ehlo()
                    if client.has_extn("starttls"):
                        client.starttls(context=context)
                        client.ehlo()
                    elif self.user is not None:
                        raise DeliveryFailed(
                            "the mail server offers no STARTTLS; credentials are sent only "
                            "over TLS (use smtps:// or a server with STARTTLS)"
                        )
                if self.user is not None:
                    client.login(self.user, self.password or "")
                client.send_message(mail)
        except DeliveryFailed:
            raise
        except smtplib.SMTPException as exc:
            raise DeliveryFailed(f"mail server refused: {exc.__class__.__name__}") from None
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryFailed(f"mail server not reached: {exc.__class__.__name__}") from None

    def describe(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"mail server {scheme}://{self.host}:{self.port}"


def make_sender(
    setting: str,
    *,
    secret: str | None = None,
    email_from: str | None = None,
    timeout: float = 10,
    base: Path | None = None,
) -> Sender:
    """The sender a validated ``notify_sms`` / ``notify_email`` value names."""
    scheme, _, rest = setting.partition(":")
    if scheme == "outbox":
        path = Path(rest)
        return OutboxSender(path if path.is_absolute() or base is None else base / path)
    if scheme in ("http", "https"):
        assert secret is not None  # validate_config requires it
        return HttpSmsSender(setting, secret=secret, timeout=timeout)
    assert email_from is not None  # validate_config requires it
    return SmtpSender(setting, sender=email_from, timeout=timeout)
