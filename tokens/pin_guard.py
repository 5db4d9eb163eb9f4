"""How often the agent lets a PIN reach a token (docs/agent.md "PIN attempts").

A USB key locks after a few wrong PINs (often 3 to 10), and unlocking it means a visit to the
certificate issuer. Any page on the allow-list can ask the agent to sign, so the agent, not the
token, is where guessing has to be stopped:

- one PIN at a time per token (requests queue for it);
- after a wrong PIN the next one waits: ``backoff_seconds`` after the first failure, doubling with
  each further one up to ``backoff_max_seconds``. The agent holds a request up to
  ``max_wait_seconds`` to honour the wait (a person retyping a PIN never notices); a longer wait
  is refused with ``pin_rate_limited`` and ``Retry-After``;
- at most ``failures_per_window`` wrong PINs per token per ``window_seconds``;
- a token at its final try (``USER_PIN_FINAL_TRY``, or seen there by this agent since its last
  right PIN) gets a PIN only with the person's explicit confirmation (``pin_final_try`` else).
  The memory lasts the agent's lifetime, so a token that stops reporting the flag is still
  guarded.

A right PIN clears a token's record, as it resets the token's own counter. Tokens are told apart
by module, serial number and label: a key pulled out and put back is the same key.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tokens.errors import PinFinalTry, PinIncorrect, PinLocked, PinRateLimited
from tokens.pkcs11 import PinState, TokenInfo

TokenKey = tuple[str, str, str]


@dataclass(frozen=True)
class PinPolicy:
    failures_per_window: int = 5
    window_seconds: float = 60.0
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    max_wait_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.failures_per_window < 1 or self.window_seconds <= 0:
            raise ValueError("PIN policy: at least one failure per positive window")
        if min(self.backoff_seconds, self.backoff_max_seconds, self.max_wait_seconds) < 0:
            raise ValueError("PIN policy: negative delay")

    def backoff(self, consecutive_failures: int) -> float:
        """Seconds between a wrong PIN and the next PIN sent to the same token."""
        if consecutive_failures <= 0:
            return 0.0
        delay = self.backoff_seconds * 2.0 ** (consecutive_failures - 1)
        return min(delay, self.backoff_max_seconds)


@dataclass
class _TokenRecord:
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: deque[float] = field(default_factory=deque)  # monotonic times in the window
    consecutive_failures: int = 0
    last_failure: float = 0.0
    final_try_seen: bool = False


def token_key(token: TokenInfo) -> TokenKey:
    return (token.module, token.serial, token.label)


class PinGuard:
    """Per-token PIN attempt records of one agent (see the module docstring)."""

    def __init__(
        self,
        policy: PinPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or PinPolicy()
        self._clock = clock
        self._sleep = sleep
        self._records: dict[TokenKey, _TokenRecord] = {}
        self._records_lock = threading.Lock()

    def _record(self, key: TokenKey) -> _TokenRecord:
        with self._records_lock:
            return self._records.setdefault(key, _TokenRecord())

    @contextmanager
    def attempt(
        self, token: TokenInfo, pin_state: PinState, *, confirm_final_try: bool
    ) -> Iterator[None]:
        """Hold the token's PIN turn for one ``C_Login``; refuse (before any PIN is sent) when a
        limit says no, and learn from the outcome (the block's ``PinIncorrect``/``PinLocked``)."""
        record = self._record(token_key(token))
        policy = self.policy
        if not record.lock.acquire(timeout=policy.max_wait_seconds + 1.0):
            raise PinRateLimited(f"{token.label}: another PIN is being tried", retry_after=1)
        try:
            now = self._clock()
            while record.failures and record.failures[0] <= now - policy.window_seconds:
                record.failures.popleft()
            if len(record.failures) >= policy.failures_per_window:
                wait = record.failures[0] + policy.window_seconds - now
                raise PinRateLimited(
                    f"{token.label}: {len(record.failures)} wrong PINs in the window",
                    retry_after=max(1, math.ceil(wait)),
                )
            wait = record.last_failure + policy.backoff(record.consecutive_failures) - now
            if wait > policy.max_wait_seconds:
                raise PinRateLimited(
                    f"{token.label}: backing off after {record.consecutive_failures} wrong PINs",
                    retry_after=max(1, math.ceil(wait)),
                )
            if pin_state.locked:
                raise PinLocked(f"{token.label}: USER_PIN_LOCKED, no PIN sent")
            if pin_state.final_try:
                record.final_try_seen = True
            if record.final_try_seen and not confirm_final_try:
                raise PinFinalTry(f"{token.label}: final try, not confirmed")
            if wait > 0:
                self._sleep(wait)
            try:
                yield
            except PinIncorrect as error:
                record.consecutive_failures += 1
                record.last_failure = self._clock()
                record.failures.append(record.last_failure)
                if error.retries_left == 1:
                    record.final_try_seen = True
                raise
            except PinLocked:
                record.final_try_seen = True
                raise
            else:
                record.failures.clear()
                record.consecutive_failures = 0
                record.final_try_seen = False
        finally:
            record.lock.release()


__all__ = ["PinGuard", "PinPolicy", "TokenKey", "token_key"]
