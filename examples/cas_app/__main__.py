"""``python -m examples.cas_app --port 5002 --cas-url URL`` (or ``--config FILE``)."""

from __future__ import annotations

import argparse
import sys

from examples.cas_app.app import CasAppConfig, create_app
from examples.serving import configure_logging, serve, settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.cas_app",
        description="An application that signs people in through CertGate (CAS 3.0).",
    )
    parser.add_argument("--config", help="TOML file with any of the options below")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 5002)")
    parser.add_argument(
        "--cas-url", dest="cas_url", help="the CAS server's prefix: CertGate's origin + /cas"
    )
    parser.add_argument("--issuer", help="CertGate's public origin (for --cas-url ORIGIN/cas)")
    parser.add_argument("--public-url", dest="public_url", help="default http://HOST:PORT")
    values = settings(parser.parse_args(argv), "CAS_APP_UNUSED")
    cas_url = values.get("cas_url") or (
        str(values["issuer"]).rstrip("/") + "/cas" if values.get("issuer") else None
    )
    if not cas_url:
        parser.error("missing: --cas-url (or --issuer)")
    host = str(values.get("host") or "127.0.0.1")
    port = int(values.get("port") or 5002)
    config = CasAppConfig(
        cas_url=str(cas_url).rstrip("/"),
        public_url=str(values.get("public_url") or f"http://{host}:{port}").rstrip("/"),
    )
    configure_logging()
    serve(create_app(config, secret_key=values.get("secret_key")), host, port, "cas_app")
    return 0


if __name__ == "__main__":
    sys.exit(main())
