"""`certgate serve`: the gateway on waitress.

waitress is pure Python and production-grade, with a thread pool and no fork model: a SoftHSM
or CRL-refresh thread started in the app keeps working, and nothing forks after start-up.
"""

from __future__ import annotations

import logging

import click
from flask import Flask

from gateway.commands.common import operator_app
from gateway.config import parse_origin


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option(
    "--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Worker threads."
)
def serve(host: str, port: int, threads: int) -> None:
    """Run the gateway (configured by ./certgate.toml and CERTGATE_* variables)."""
    configure_logging()
    app = operator_app(serve=True)
    if app.config["DEV_MODE"] and app.config["CONFIG_SOURCE"].get("PUBLIC_ORIGIN") == "default":
        # Dev mode without a configured origin: the address this server answers on.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        app.config["PUBLIC_ORIGIN"] = parse_origin(
            f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
        )
    click.echo(
        f"CertGate listening on http://{host}:{port} (public origin {app.config['PUBLIC_ORIGIN']})",
        err=True,
    )
    serve_app(app, host=host, port=port, threads=threads)


def configure_logging() -> None:
    """What ``certgate serve`` logs: INFO and up (failed requests included) to standard error."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def serve_app(app: Flask, *, host: str, port: int, threads: int) -> None:
    """Serve ``app`` on waitress until interrupted: how ``certgate serve`` runs the gateway."""
    from waitress import serve as waitress_serve

    # No waitress trusted_proxy: the gateway reads X-Forwarded-For itself, and only from
    # CERTGATE_TRUSTED_PROXIES (gateway/proxy.py). waitress 3 deletes X-Forwarded-* headers by
    # default when it has no trusted_proxy, which would leave every client behind a proxy with
    # the proxy's address (one shared rate limit, the proxy in the audit trail): keep them.
    waitress_serve(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="certgate",
        clear_untrusted_proxy_headers=False,
        max_request_body_size=app.config["MAX_CONTENT_LENGTH"] * 2,
    )
