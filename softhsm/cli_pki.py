"""`certgate pki`: the test PKI."""

import click


@click.group()
def pki() -> None:
    """Create and run a test PKI (root and intermediate CAs, CRLs, OCSP)."""
