"""`certgate softhsm`: SoftHSM token provisioning."""

import click


@click.group()
def softhsm() -> None:
    """Create SoftHSM tokens holding test certificates and their keys."""
