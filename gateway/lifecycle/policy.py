"""What a new password must be (registration, reset and change alike).

- at least ``MIN_LENGTH`` (10) characters, at most ``gateway.passwords.MAX_PASSWORD_LENGTH``;
- not one of the common passwords people pick first: the 30,000 of zxcvbn's bundled frequency
  list (offline; compared without case), nor fewer than 4 different characters ("aaaaaaaaaa");
- not containing the account's own phone number, ID-card number, unified social credit code
  or login name (anyone who knows the account knows those).

A refusal is ``password_weak`` with ``reason``: too_short, too_long, common, personal.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from gateway.lifecycle.errors import PasswordWeak
from gateway.passwords import MAX_PASSWORD_LENGTH

MIN_LENGTH = 10
MIN_DISTINCT_CHARACTERS = 4
# Shorter personal values (a 3-letter login name) would refuse too many good passwords.
MIN_PERSONAL_LENGTH = 5


@functools.cache
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def check_new_password(password: str, personal: Iterable[str | None] = ()) -> None:
    """Raise ``PasswordWeak`` unless ``password`` may be set; ``personal``: the account's own
    identifiers (None entries are skipped)."""
    if len(password) < MIN_LENGTH:
        raise PasswordWeak("too_short", minimum=MIN_LENGTH)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordWeak("too_long", maximum=MAX_PASSWORD_LENGTH)
    folded = password.lower()
    if folded in common_passwords() or len(set(folded)) < MIN_DISTINCT_CHARACTERS:
        raise PasswordWeak("common")
    for value in personal:
        if value and len(value) >= MIN_PERSONAL_LENGTH and value.lower() in folded:
            raise PasswordWeak("personal")
