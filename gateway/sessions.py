"""Server-side sessions: an opaque cookie, a hashed row, idle and absolute timeouts, CSRF token.

The cookie holds 32 random bytes; the store keeps only their SHA-256, so a copy of the table does
not let anyone sign in. A login always makes a new session (rotation) and drops the one the
browser had. ``amr`` (RFC 8176) records how the person signed in and ``acr`` the level that
reached (gateway/assurance.py).

Cookie names: where the public origin is HTTPS, the session and pre-login cookies carry the
``__Host-`` prefix (``gateway.config.host_cookie_name``, applied once at start-up), so a browser
accepts them only when Secure, for Path=/ and with no Domain: a sibling or parent domain cannot
plant or shadow them. Plain-HTTP loopback development keeps the configured names (browsers honour
the prefix only from secure origins).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, Request, Response, current_app, g, has_request_context

from gateway.stores import SessionRecord, SessionStore

EXTENSION = "certgate.sessions"
CSRF_HEADER = "X-CSRF-Token"
TOUCH_AT_MOST_EVERY = timedelta(seconds=30)
# Where a request keeps the session row its cookie names, once read: the consent and acting
# gates and the route all ask for it, and one read serves them.
_READ = "certgate_session_read"


def _urlsafe(random: bytes) -> str:
    return base64.urlsafe_b64encode(random).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class NewSession:
    token: str
    record: SessionRecord


class SessionManager:
    def __init__(
        self, store: SessionStore, *, cookie_name: str, idle_timeout: int, absolute_timeout: int
    ) -> None:
        self.store = store
        self.cookie_name = cookie_name
        self.idle = timedelta(seconds=idle_timeout)
        self.absolute = timedelta(seconds=absolute_timeout)
        # The idle timer is written at most this often: a page and the requests it makes, or
        # an application's sign-on round trip, write the session row once rather than on every
        # request. The session may so end up to this much before a full idle period has passed
        # since its last request, never after.
        self.touch_every = min(self.idle / 20, TOUCH_AT_MOST_EVERY)

    def start(
        self,
        account_id: int,
        amr: tuple[str, ...],
        *,
        acr: str,
        at: datetime,
        previous_token: str | None,
    ) -> NewSession:
        if previous_token:
            self.store.delete(token_hash(previous_token))
        self.forget()
        # Cookie and CSRF token from one read of the system CSPRNG (a system call that lets go
        # of the GIL; see gateway/login.py ``challenge``), each as secrets.token_urlsafe(32).
        random = secrets.token_bytes(64)
        token = _urlsafe(random[:32])
        record = SessionRecord(
            id_hash=token_hash(token),
            account_id=account_id,
            amr=amr,
            acr=acr,
            csrf_token=_urlsafe(random[32:]),
            created_at=at,
            last_seen_at=at,
            expires_at=at + self.absolute,
        )
        self.store.create(record)
        return NewSession(token, record)

    def read(self, request: Request) -> SessionRecord | None:
        """The session row this request's cookie names, as stored (not checked for expiry,
        idle timer not touched), or None. Read once per request: the gates that run before
        every route and the route itself share it."""
        token = request.cookies.get(self.cookie_name)
        if not token or len(token) > 128:
            return None
        id_hash = token_hash(token)
        kept: tuple[str, SessionRecord | None] | None = (
            g.get(_READ) if has_request_context() else None
        )
        if kept is not None and kept[0] == id_hash:
            return kept[1]
        record = self.store.get(id_hash)
        if has_request_context():
            setattr(g, _READ, (id_hash, record))
        return record

    @staticmethod
    def forget() -> None:
        """Drop the row this request read: it was just ended or replaced."""
        if has_request_context():
            g.pop(_READ, None)

    def current(self, request: Request, *, at: datetime) -> SessionRecord | None:
        """The live session of this request (touching its idle timer), or None."""
        record = self.read(request)
        if record is None:
            return None
        if at >= record.expires_at or at >= record.last_seen_at + self.idle:
            self.store.delete(record.id_hash)
            self.forget()
            return None
        if at - record.last_seen_at >= self.touch_every:
            self.store.touch(record.id_hash, at=at)
        return record

    def end(self, record: SessionRecord, *, everywhere: bool) -> int:
        self.forget()
        if everywhere:
            return self.store.delete_for_account(record.account_id)
        self.store.delete(record.id_hash)
        return 1

    @staticmethod
    def csrf_ok(record: SessionRecord, request: Request) -> bool:
        sent = request.headers.get(CSRF_HEADER, "")
        return bool(sent) and hmac.compare_digest(sent.encode(), record.csrf_token.encode())

    def set_cookie(self, response: Response, token: str, *, max_age: int | None = None) -> None:
        set_secure_cookie(
            response, self.cookie_name, token, max_age=max_age or int(self.absolute.total_seconds())
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie_name, path="/", secure=True, httponly=True, samesite="Lax"
        )


def set_secure_cookie(response: Response, name: str, value: str, *, max_age: int) -> None:
    """Secure, HttpOnly, SameSite=Lax, Path=/ and no Domain: what a ``__Host-`` name requires
    (browsers accept Secure cookies on http://localhost)."""
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Lax"
    )


def init_app(app: Flask, store: SessionStore) -> SessionManager:
    manager = SessionManager(
        store,
        cookie_name=app.config["SESSION_COOKIE"],
        idle_timeout=app.config["SESSION_IDLE_TIMEOUT"],
        absolute_timeout=app.config["SESSION_ABSOLUTE_TIMEOUT"],
    )
    app.extensions[EXTENSION] = manager
    return manager


def get_sessions(app: Flask | None = None) -> SessionManager:
    return (app or current_app).extensions[EXTENSION]
