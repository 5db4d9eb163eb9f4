"""Purges of expired short-lived state (challenges, sessions, old login attempts, and the single
sign-on tables: gateway/sso/housekeeping.py).

Runs inside requests, at most once per ``INTERVAL`` of the app's clock, so the embedded
deployment needs no scheduler; a shared store with its own expiry (Redis) makes its purge a
no-op, while the single sign-on tables, in the database whatever the state store, are purged.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from flask import Flask, current_app

from gateway.sso.housekeeping import purge_expired
from gateway.sso.logout import end_expired_sessions
from gateway.storage.database import get_database
from gateway.stores import AttemptStore, ChallengeStore, SessionStore

EXTENSION = "certgate.housekeeping"
INTERVAL = timedelta(minutes=5)


class Housekeeper:
    def __init__(
        self,
        challenges: ChallengeStore,
        sessions: SessionStore,
        attempts: AttemptStore,
        *,
        keep_attempts: timedelta,
    ) -> None:
        self.challenges = challenges
        self.sessions = sessions
        self.attempts = attempts
        self.keep_attempts = keep_attempts
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def maybe_run(self, now: datetime) -> bool:
        with self._lock:
            if self._last is not None and now - self._last < INTERVAL:
                return False
            self._last = now
        self.challenges.purge(before=now)
        self.sessions.purge(before=now)
        self.attempts.purge(before=now - self.keep_attempts)
        return True


def init_app(
    app: Flask, challenges: ChallengeStore, sessions: SessionStore, attempts: AttemptStore
) -> Housekeeper:
    keep = max(app.config["RATE_LIMIT_WINDOW"], app.config["LOCKOUT_WINDOW"])
    housekeeper = Housekeeper(challenges, sessions, attempts, keep_attempts=timedelta(seconds=keep))
    app.extensions[EXTENSION] = housekeeper
    return housekeeper


def run_housekeeping(now: datetime) -> None:
    housekeeper: Housekeeper = current_app.extensions[EXTENSION]
    if housekeeper.maybe_run(now):
        # Single logout for the sessions that ended by themselves (idle or absolute expiry).
        end_expired_sessions(current_app, now)
        # Then the single sign-on tables; after the logouts above, which read the CAS tickets.
        purge_expired(get_database(current_app), now)
