"""`certgate account`: filled by the gateway issue; until then the group has no commands."""

import click


@click.group()
def account() -> None:
    """(Not available yet: arrives with the gateway.)"""
