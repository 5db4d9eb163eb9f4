"""Shared fixtures. Each area keeps its fixtures in its own plugin module, listed here."""

pytest_plugins = [
    "tests.fixtures_pki",
    "tests.fixtures_softhsm",
    "tests.fixtures_sm2_ukey",
]
