"""Abuse limits on login attempts: per client address, per password subject (an account, or a
typed identifier that names none), per certificate; and password lockout.

A fast guesser meets ``rate_limited`` first (``ACCOUNT_ATTEMPT_LIMIT`` attempts per
``RATE_LIMIT_WINDOW``); a patient one meets ``account_locked`` after ``LOCKOUT_THRESHOLD``
consecutive failures within ``LOCKOUT_WINDOW``, for ``LOCKOUT_DURATION``.

One factor's failures never lock out a stronger one. Password guesses count against the
password subject only, and the lock they earn stops password sign-in only: a certificate login
proves possession of the key, so it is refused only by its own certificate's failures or by an
operator (a frozen account). Limits are checked and counted in one atomic step
(``AttemptStore.admit``); a successful login is un-counted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from flask import Flask, current_app, has_app_context

from certs.errors import BadRequest, CertGateError
from gateway.errors import AccountLocked, RateLimited
from gateway.stores import Admission, AttemptStore

EXTENSION = "certgate.limits"
# Login methods a lock can stop (the ``method`` of ``account_locked``); an SMS code will be the
# next, counted like a password.
PASSWORD = "password"
# IPv6 clients are limited per /64: one subscriber's LAN gets a /64 (or more), and its hosts
# pick addresses inside it at will.
IPV6_CLIENT_PREFIX = 64


def address_key(address: str) -> str:
    """The limit key of a client address: IPv4 as is, an IPv4-mapped IPv6 address as its IPv4
    address, any other IPv6 address as its /64."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return f"address:{address}"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"address:{parsed.ipv4_mapped}"
        network = ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False)
        return f"address:{network}"
    return f"address:{parsed}"


def password_key(subject: str) -> str:
    """The password subject's key: ``account:<id>``, or ``identifier:<hash>`` for a typed
    identifier that names no account (limited and locked exactly like an account)."""
    return f"{PASSWORD}:{subject}"


def certificate_key(thumbprint: str) -> str:
    return f"certificate:{thumbprint}"


def challenge_key(address: str) -> str:
    return "challenge:" + address_key(address).removeprefix("address:")


def qr_ticket_key(address: str) -> str:
    return "qr:" + address_key(address).removeprefix("address:")


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

    def _admit(self, key: str, limit: int, at: datetime, what: str) -> Admission:
        admission = self.store.admit(key, limit=limit, window=self.window, at=at)
        if not admission.admitted:
            wait = (admission.retry_at or at + self.window) - at
            raise RateLimited(
                f"{what} limit reached", retry_after=max(1, int(wait.total_seconds() + 0.999))
            )
        return admission

    def admit_address(self, address: str, at: datetime) -> Admission:
        return self._admit(address_key(address), self.address_limit, at, "address")

    def admit_subject(self, key: str, at: datetime) -> Admission:
        """Per password subject or certificate."""
        return self._admit(key, self.account_limit, at, "account")

    def admit_challenge(self, address: str, at: datetime) -> None:
        """Challenges per address: they cost memory or a row each until they expire, so they
        stay counted."""
        self._admit(challenge_key(address), self.challenge_limit, at, "challenge")

    def admit_qr_ticket(self, address: str, at: datetime, *, limit: int) -> None:
        """QR login tickets per address (gateway/qr): like challenges, each costs a row until
        it expires, so they stay counted."""
        self._admit(qr_ticket_key(address), limit, at, "QR ticket")

    def succeeded(self, admissions: Sequence[Admission]) -> None:
        """A successful login does not count against any limit, and ends the failure streak."""
        self.store.give_back_all(admissions, end_streak=True)

    def give_back(self, admissions: Sequence[Admission]) -> None:
        self.store.give_back_all(admissions, end_streak=False)

    def locked_until(self, key: str, at: datetime) -> datetime | None:
        return self.store.locked_until(key, at=at)

    def failed(self, key: str, at: datetime) -> datetime | None:
        """A failed password: the end of the lock this failure starts, or None."""
        return self.store.failed(
            key,
            at=at,
            threshold=self.lockout_threshold,
            window=self.lockout_window,
            duration=self.lockout_duration,
        )

    @contextmanager
    def attempt(self) -> Iterator[list[Admission]]:
        """Admissions taken inside count as an attempt if it fails on the credentials; an
        answer that says nothing about them (bad input, a limit, an unexpected error) gives
        them back."""
        admissions: list[Admission] = []
        try:
            yield admissions
        except (BadRequest, RateLimited):
            self.give_back(admissions)
            raise
        except CertGateError:
            raise
        except Exception:
            self.give_back(admissions)
            raise


def password_locked(locked_until: datetime) -> AccountLocked:
    """The lock's answer; its message shows the end in the display time zone of the pages."""
    zone = current_app.config.get("DISPLAY_TIME_ZONE") if has_app_context() else None
    return AccountLocked(
        "password sign-in locked",
        method=PASSWORD,
        locked_until=locked_until,
        shown_zone=str(zone or "UTC"),
    )


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
