"""The HTTP status table agrees with DESIGN.md, and every gateway error speaks both languages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import certs.errors
import gateway.errors
import gateway.signatures
from certs.errors import LANGUAGES, CertGateError
from gateway.errors import HTTP_STATUS

DESIGN = Path(__file__).resolve().parents[3] / "shared" / "DESIGN.md"


def design_table() -> dict[str, int]:
    text = DESIGN.read_text(encoding="utf-8")
    section = text[text.index("### Errors") :]
    table: dict[str, int] = {}
    for status, codes in re.findall(r"^\| (\d{3}) \| (.+) \|$", section, re.MULTILINE):
        for code in re.findall(r"`([a-z_]+)`", codes):
            table[code] = int(status)
    return table


@pytest.mark.skipif(not DESIGN.is_file(), reason="../shared/DESIGN.md is not checked out here")
def test_status_table_matches_design() -> None:
    assert design_table() == dict(HTTP_STATUS)


def error_classes() -> list[type[CertGateError]]:
    modules = (certs.errors, gateway.errors, gateway.signatures)
    return [
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, CertGateError)
    ]


@pytest.mark.parametrize("error", error_classes(), ids=lambda e: e.__name__)
def test_every_error_has_a_status_and_both_languages(error: type[CertGateError]) -> None:
    assert error.code in HTTP_STATUS
    assert set(LANGUAGES) <= set(error.templates)
