"""Chinese identifier checksums: the unified social credit code and the resident ID-card number.

Written here rather than taken from python-stdnum because stdnum's ``cn.uscc`` rejects codes whose
first character is a letter (A, N, Y are valid registration authorities under GB 32100-2015).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

# GB 32100-2015: the 31 characters allowed (no I, O, Z, S, V); a character's value is its index.
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# Position 1: registration authority (1-9, or A, N, Y for other authorities).
_USCC_RE = re.compile(r"^[1-9ANY][0-9A-HJ-NP-RTUW-Y][0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}$")

# GB 11643-1999 (ISO 7064 MOD 11-2).
ID_CARD_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CARD_RE = re.compile(r"^[1-9][0-9]{5}([0-9]{8})[0-9]{3}[0-9X]$")


def uscc_check_character(first17: str) -> str:
    """The 18th character of a unified social credit code whose first 17 are given."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    """True if ``code`` is a well-formed unified social credit code with a valid check character."""
    if not _USCC_RE.match(code):
        return False
    return uscc_check_character(code[:17]) == code[17]


def id_card_check_character(first17: str) -> str:
    """The 18th character of an ID-card number whose first 17 digits are given."""
    total = sum(int(c) * w for c, w in zip(first17, ID_CARD_WEIGHTS, strict=True))
    check = (12 - total % 11) % 11
    return "X" if check == 10 else str(check)


def is_valid_id_card_number(number: str) -> bool:
    """True if ``number`` is an 18-digit ID-card number with a real birth date and correct check."""
    match = _ID_CARD_RE.match(number)
    if not match:
        return False
    birth = match.group(1)
    try:
        born = date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    except ValueError:
        return False
    if born.year < 1850:
        return False
    return id_card_check_character(number[:17]) == number[17]


def normalize_typed(value: str) -> str:
    """What a person typed, as the ASCII it means: full-width digits and letters (an IME's
    １１０１…, ＭＡ５) to ASCII by NFKC, and every space (the ideographic one too) removed."""
    text = value if value.isascii() else unicodedata.normalize("NFKC", value)
    return "".join(text.split())


def normalize_identifier(value: str) -> str:
    """An identifier as typed by a person, upper-cased (a trailing x becomes X); full-width
    characters and spaces are accepted (``normalize_typed``)."""
    return normalize_typed(value).upper()


def mask_identifier(value: str) -> str:
    """A form safe for logs: first 4 and last 2 characters, the rest hidden."""
    if len(value) <= 6:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 6) + value[-2:]
