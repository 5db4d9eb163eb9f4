"""`certgate agent`: the local signing agent (arrives with the tokens issue)."""

import click


@click.group()
def agent() -> None:
    """(Not available yet: the local signing agent arrives with the tokens issue.)"""
