"""``python -m examples.oidc_app --port 5001 --issuer URL --client-id ID`` (the secret from
``--client-secret``, ``--config FILE`` or ``OIDC_APP_CLIENT_SECRET``)."""

from __future__ import annotations

import argparse
import sys

from examples.oidc_app.app import OidcAppConfig, create_app
from examples.serving import configure_logging, serve, settings

SECRET_ENVIRONMENT = "OIDC_APP_CLIENT_SECRET"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.oidc_app",
        description="An application that signs people in through CertGate (OpenID Connect).",
    )
    parser.add_argument("--config", help="TOML file with any of the options below")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 5001)")
    parser.add_argument("--issuer", help="CertGate's public origin")
    parser.add_argument("--client-id", dest="client_id")
    parser.add_argument(
        "--client-secret",
        dest="client_secret",
        help=f"prefer --config or {SECRET_ENVIRONMENT}: a command line is visible to others",
    )
    parser.add_argument("--public-url", dest="public_url", help="default http://HOST:PORT")
    values = settings(parser.parse_args(argv), SECRET_ENVIRONMENT)
    missing = [name for name in ("issuer", "client_id") if not values.get(name)]
    if missing:
        parser.error("missing: " + ", ".join("--" + name.replace("_", "-") for name in missing))
    host = str(values.get("host") or "127.0.0.1")
    port = int(values.get("port") or 5001)
    config = OidcAppConfig(
        issuer=str(values["issuer"]).rstrip("/"),
        client_id=str(values["client_id"]),
        client_secret=values.get("client_secret") or None,
        public_url=str(values.get("public_url") or f"http://{host}:{port}").rstrip("/"),
    )
    configure_logging()
    serve(create_app(config, secret_key=values.get("secret_key")), host, port, "oidc_app")
    return 0


if __name__ == "__main__":
    sys.exit(main())
