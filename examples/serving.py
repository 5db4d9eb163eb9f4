"""Reading an example application's settings (command line, then a TOML file, then the
environment for the secret) and serving it with waitress, which keeps no access log: the
query strings that carry authorization codes and service tickets never reach a log line."""

from __future__ import annotations

import argparse
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from flask import Flask


def settings(arguments: argparse.Namespace, secret_environment: str) -> dict[str, Any]:
    """The options given on the command line over those of ``--config`` (a TOML file with
    the same names, ``client_secret`` included); the client secret may also come from the
    environment variable ``secret_environment``, so it never shows in a process list."""
    values: dict[str, Any] = {}
    if arguments.config:
        values.update(tomllib.loads(Path(arguments.config).read_text(encoding="utf-8")))
    for name, value in vars(arguments).items():
        if value is not None and name != "config":
            values[name] = value
    if not values.get("client_secret") and os.environ.get(secret_environment):
        values["client_secret"] = os.environ[secret_environment]
    return values


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Authlib logs PKCE verifiers and tokens at DEBUG; keep its records to warnings.
    logging.getLogger("authlib").setLevel(logging.WARNING)


def serve(app: Flask, host: str, port: int, name: str) -> None:
    from waitress import serve as waitress_serve

    print(f"{name} listening on http://{host}:{port}/", flush=True)
    waitress_serve(app, host=host, port=port, threads=4, ident=name)
