"""`certgate cert`: the certificate engine on its own."""

import click


@click.group()
def cert() -> None:
    """Validate certificates with the certificate engine."""
