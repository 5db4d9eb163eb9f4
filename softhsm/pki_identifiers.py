"""Random but checksum-valid Chinese identifiers for test certificates.

Built on the check-character functions of ``certs.identifiers`` (GB 32100-2015 for the unified
social credit code, GB 11643-1999 for the resident ID-card number), so a generated identifier passes
the same validation the certificate engine applies.
"""

from __future__ import annotations

import random
import secrets
from datetime import date, timedelta

from certs.identifiers import USCC_CHARSET, id_card_check_character, uscc_check_character

# Administrative division codes (GB/T 2260) of a few real places, so generated numbers look real.
REGION_CODES = ("110105", "310104", "440305", "330106", "510107", "420106", "320102", "370102")

# GB 11714-1997 organization code: 8 characters then a check character.
_ORGANIZATION_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORGANIZATION_CODE_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _system_random() -> random.Random:
    return secrets.SystemRandom()


def organization_code_check_character(first8: str) -> str:
    """GB 11714 check character of an organization code (the 9th character)."""
    total = sum(
        _organization_code_value(c) * w
        for c, w in zip(first8, _ORGANIZATION_CODE_WEIGHTS, strict=True)
    )
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def _organization_code_value(character: str) -> int:
    if character.isdigit():
        return int(character)
    return ord(character) - ord("A") + 10


def random_uscc(rng: random.Random | None = None) -> str:
    """A checksum-valid unified social credit code of an enterprise (registration authority 9,
    enterprise type 1), with a GB 11714-valid organization code inside."""
    rng = rng or _system_random()
    organization = "".join(rng.choice("0123456789") for _ in range(8))
    organization += organization_code_check_character(organization)
    first17 = "91" + rng.choice(REGION_CODES) + organization
    assert all(c in USCC_CHARSET for c in first17)
    return first17 + uscc_check_character(first17)


def random_id_card_number(
    rng: random.Random | None = None, *, born: date | None = None, female: bool | None = None
) -> str:
    """A checksum-valid 18-digit resident ID-card number (GB 11643-1999)."""
    rng = rng or _system_random()
    if born is None:
        born = date(1960, 1, 1) + timedelta(days=rng.randrange(0, 40 * 365))
    if female is None:
        female = rng.random() < 0.5
    sequence = rng.randrange(0, 500) * 2 + (0 if female else 1)  # odd digit: male
    first17 = f"{rng.choice(REGION_CODES)}{born:%Y%m%d}{sequence:03d}"
    return first17 + id_card_check_character(first17)
