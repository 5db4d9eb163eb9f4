"""The gateway's clock, injectable so tests control expiry and timeouts without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from flask import Flask, current_app

EXTENSION = "certgate.clock"


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def init_app(app: Flask) -> Clock:
    clock: Clock = app.config.get("CLOCK") or SystemClock()
    app.extensions[EXTENSION] = clock
    return clock


def now() -> datetime:
    clock: Clock = current_app.extensions[EXTENSION]
    return clock.now()
