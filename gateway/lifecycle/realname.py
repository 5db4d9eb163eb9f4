"""Real-name level 1 at registration: the ID-card number agrees with itself.

A person's (or an enterprise's legal representative's) ID-card number reaches level 1 when

- its check character is right (GB 11643-1999, ISO 7064 MOD 11-2),
- its birth date (digits 7-14) is a real date, not after today and at most 150 years ago, and
- its region code (digits 1-6) names a province-level division of GB/T 2260 (digits 1-2: 11-15,
  21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82, and 83 for residence permits of Taiwan
  residents) with a prefecture and county part other than 0000.

This is a consistency check the gateway can make offline; it does not prove the number belongs
to the person typing it. A number whose check character is wrong is refused outright
(``identifier_invalid``); one that passes the checksum but fails the date or region check is
accepted at level 0. Level 2 (in person, or a CA certificate) and 3 (face) are given elsewhere.
"""

from __future__ import annotations

from datetime import date

from certs.identifiers import is_valid_id_card_number

PROVINCE_CODES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
MAX_AGE_YEARS = 150


def id_card_number_consistent(number: str, *, today: date) -> bool:
    """True when a normalised ID-card number passes all three checks above."""
    if not is_valid_id_card_number(number):
        return False
    if int(number[:2]) not in PROVINCE_CODES or number[2:6] == "0000":
        return False
    born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    return born <= today and today.year - born.year <= MAX_AGE_YEARS


def registration_level(number: str, *, today: date) -> int:
    """The real-name level a registration with this ID-card number starts at: 1 or 0."""
    return 1 if id_card_number_consistent(number, today=today) else 0
