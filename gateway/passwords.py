"""Password hashing: argon2id (by default argon2-cffi's RFC 9106 low-memory profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


class Passwords:
    """Hashes and verifies passwords with argon2id.

    ``memory_cost`` (KiB) and ``time_cost`` default to RFC 9106's low-memory profile
    (64 MiB, 3 passes); tests lower them to stay fast. Old hashes keep verifying when the
    parameters change."""

    def __init__(self, *, memory_cost: int = 65536, time_cost: int = 3) -> None:
        self._hasher = PasswordHasher(memory_cost=memory_cost, time_cost=time_cost)
        # Verified against when the identifier matches no account, so both paths cost the same.
        self._dummy_hash = self._hasher.hash("certgate: no such account")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; an absent hash still costs one verification."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"at most {MAX_PASSWORD_LENGTH} characters"
    return None
