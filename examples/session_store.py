"""A server-side session store for the example applications.

The browser's cookie carries only a random session key; what the session holds (who signed in,
the OpenID Connect ``sid`` or the CAS service ticket) stays in this process. That is what single
logout needs: a back-channel logout token or a CAS ``logoutRequest`` arrives without the
person's cookie, and the application must find and end the sessions it names.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict


class StoredSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, initial: dict[str, Any] | None = None, key: str | None = None) -> None:
        def touched(_: Any) -> None:
            self.modified = True

        super().__init__(initial or {}, touched)
        self.key = key
        self.modified = False


class ServerSideSessions(SessionInterface):
    """Sessions kept in memory, keyed by a random value in an HttpOnly cookie."""

    def __init__(self, cookie_name: str) -> None:
        self.cookie_name = cookie_name
        self._lock = threading.Lock()
        self._sessions: dict[str, dict[str, Any]] = {}

    def open_session(self, app: Flask, request: Request) -> StoredSession:
        key = request.cookies.get(self.cookie_name)
        if key:
            with self._lock:
                data = self._sessions.get(key)
            if data is not None:
                return StoredSession(dict(data), key)
        return StoredSession()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, StoredSession)
        if not session.modified:
            return
        if not session:
            if session.key is not None:
                with self._lock:
                    self._sessions.pop(session.key, None)
                response.delete_cookie(self.cookie_name, path="/")
            return
        with self._lock:
            if session.key is not None and session.key not in self._sessions:
                # Ended meanwhile (single logout): a request still in flight must not bring
                # the session back.
                ended = True
            else:
                ended = False
                session.key = session.key or secrets.token_urlsafe(32)
                self._sessions[session.key] = dict(session)
        if ended:
            response.delete_cookie(self.cookie_name, path="/")
            return
        response.set_cookie(
            self.cookie_name,
            session.key,
            httponly=True,
            samesite="Lax",
            secure=app.config.get("SESSION_COOKIE_SECURE", False),
            path="/",
        )

    def end_where(self, matches: Callable[[dict[str, Any]], bool]) -> int:
        """End every session whose data ``matches``; how many ended."""
        with self._lock:
            ended = [key for key, data in self._sessions.items() if matches(data)]
            for key in ended:
                del self._sessions[key]
        return len(ended)
