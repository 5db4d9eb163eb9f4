"""Abuse limits on login attempts: per client address, per account (or typed identifier), per
certificate; and account lockout after repeated failures.

A fast guesser meets ``rate_limited`` first (``ACCOUNT_ATTEMPT_LIMIT`` attempts per
``RATE_LIMIT_WINDOW``); a patient one meets ``account_locked`` after ``LOCKOUT_THRESHOLD``
consecutive failures within ``LOCKOUT_WINDOW``, for ``LOCKOUT_DURATION``. Counting lives behind
``AttemptStore`` so a shared store can replace the SQL one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask, current_app

from gateway.errors import RateLimited
from gateway.stores import AttemptStore

EXTENSION = "certgate.limits"


def address_key(address: str) -> str:
    return f"address:{address}"


def account_key(account_id: int) -> str:
    return f"account:{account_id}"


class LoginGuard:
    def __init__(
        self,
        store: AttemptStore,
        *,
        window: int,
        address_limit: int,
        account_limit: int,
        lockout_threshold: int,
        lockout_window: int,
        lockout_duration: int,
        challenge_limit: int = 60,
    ) -> None:
        self.store = store
        self.challenge_limit = challenge_limit
        self.window = timedelta(seconds=window)
        self.address_limit = address_limit
        self.account_limit = account_limit
        self.lockout_threshold = lockout_threshold
        self.lockout_window = timedelta(seconds=lockout_window)
        self.lockout_duration = timedelta(seconds=lockout_duration)

    def _check(self, key: str, limit: int, at: datetime, what: str) -> None:
        if self.store.count(key, since=at - self.window) >= limit:
            raise RateLimited(f"{what} limit reached", retry_after=int(self.window.total_seconds()))

    def check_address(self, address: str, at: datetime) -> None:
        self._check(address_key(address), self.address_limit, at, "address")

    def check_subject(self, key: str, at: datetime) -> None:
        """Per account, typed identifier or certificate."""
        self._check(key, self.account_limit, at, "account")

    def record(self, keys: list[str], at: datetime, *, succeeded: bool) -> None:
        self.store.record(keys, at=at, succeeded=succeeded)

    def check_challenges(self, address: str, at: datetime) -> None:
        """Challenges per address: they cost a row each until they expire."""
        key = f"challenge:{address}"
        self._check(key, self.challenge_limit, at, "challenge")
        self.store.record([key], at=at, succeeded=True)

    def lock_until(
        self, key: str, at: datetime, *, previous_lock: datetime | None = None
    ) -> datetime | None:
        """When enough consecutive failures piled up: the end of the lockout; else None.

        Failures before the end of a previous lockout do not count again."""
        since = at - self.lockout_window
        if previous_lock is not None and previous_lock > since:
            since = previous_lock
        failures = self.store.failures_since_success(key, since=since)
        return at + self.lockout_duration if failures >= self.lockout_threshold else None


def init_app(app: Flask, store: AttemptStore) -> LoginGuard:
    guard = LoginGuard(
        store,
        window=app.config["RATE_LIMIT_WINDOW"],
        address_limit=app.config["ADDRESS_ATTEMPT_LIMIT"],
        account_limit=app.config["ACCOUNT_ATTEMPT_LIMIT"],
        lockout_threshold=app.config["LOCKOUT_THRESHOLD"],
        lockout_window=app.config["LOCKOUT_WINDOW"],
        lockout_duration=app.config["LOCKOUT_DURATION"],
        challenge_limit=app.config["CHALLENGE_LIMIT"],
    )
    app.extensions[EXTENSION] = guard
    return guard


def get_guard(app: Flask | None = None) -> LoginGuard:
    return (app or current_app).extensions[EXTENSION]
