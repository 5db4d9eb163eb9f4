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
accepted at level 0. Level 2 comes from binding a CA certificate that carries the same
ID-card number or credit code (gateway/lifecycle/binding.py) or from an operator who checked in
person (``certgate account set-real-name-level``); 3 (face) from an operator.

``IdentityVerifier`` is where an external register check (公安 for persons, 工商 for
enterprises) plugs in; ``DevelopmentVerifier`` answers without checking anything and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from flask import Flask, current_app

from certs.identifiers import is_valid_id_card_number, is_valid_uscc

log = logging.getLogger(__name__)

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


# --- external identity verification (公安 / 工商) -----------------------------------------------


@dataclass(frozen=True)
class VerifierAnswer:
    """What an external register said: ``consistent`` when name and number belong together."""

    consistent: bool
    source: str  # who answered, e.g. "development verifier (no real check)"
    development: bool


class IdentityVerifier(Protocol):
    """An external check of a person's name and ID-card number against the public security
    register (公安), or an enterprise's name, credit code and legal representative against the
    market regulation register (工商). A production deployment plugs its provider in here."""

    development: bool

    def describe(self) -> str: ...

    def verify_person(self, real_name: str, id_card_number: str) -> VerifierAnswer: ...

    def verify_enterprise(
        self, name: str, uscc: str, legal_representative_name: str
    ) -> VerifierAnswer: ...


class DevelopmentVerifier:
    """Says "consistent" to every well-formed input and says that it checked nothing: for
    development and tests only. It never raises a real-name level on its own."""

    development = True
    SOURCE = "development verifier (no real check)"

    def describe(self) -> str:
        return self.SOURCE

    def verify_person(self, real_name: str, id_card_number: str) -> VerifierAnswer:
        return VerifierAnswer(
            consistent=bool(real_name.strip()) and is_valid_id_card_number(id_card_number),
            source=self.SOURCE,
            development=True,
        )

    def verify_enterprise(
        self, name: str, uscc: str, legal_representative_name: str
    ) -> VerifierAnswer:
        return VerifierAnswer(
            consistent=bool(name.strip())
            and bool(legal_representative_name.strip())
            and is_valid_uscc(uscc),
            source=self.SOURCE,
            development=True,
        )


VERIFIER_EXTENSION = "certgate.identity_verifier"


def get_identity_verifier(app: Flask | None = None) -> IdentityVerifier | None:
    """The configured external verifier; None outside development mode until one is plugged in."""
    verifier: IdentityVerifier | None = (app or current_app).extensions.get(VERIFIER_EXTENSION)
    return verifier


def init_app(app: Flask) -> None:
    """In development mode the development verifier stands in (and the log says so once)."""
    if app.config.get("DEV_MODE"):
        verifier = DevelopmentVerifier()
        app.extensions[VERIFIER_EXTENSION] = verifier
        log.warning("DEVELOPMENT IDENTITY VERIFIER: %s", verifier.describe())
