"""`certgate serve`: the gateway server (arrives with the gateway issue)."""

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the gateway (not available yet)."""
    raise click.UsageError("the gateway server is not built yet in this version of CertGate")
