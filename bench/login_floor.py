"""The least a challenge login can cost on this gateway, served beside the real login routes.

``POST /bench/login-floor`` takes the body of ``/api/v1/login/token`` and does only what any
challenge-signing login has to do, with the gateway's own pieces:

- read the JSON body and the DER certificate;
- consume the single-use challenge bound to the pre-login cookie, and check its expiry;
- verify the signature over the rebuilt login message (``tokens.login_message``);
- validate the path with pyca/cryptography's verifier alone, on the configured anchors and
  intermediates (the library the certificate engine builds on);
- start a server-side session and commit it, and answer with its cookie.

Everything else a login does is left out: revocation, the engine's own leaf and path checks,
identity extraction, the account look-up and its state, attempt counting and the audit record.
``bench/bench_login.py`` runs this route and the full login on the same server in the same run,
so its table shows how much of a login is this floor and how much the checks on top of it.

A benchmark tool, never part of the product: ``python -m bench.login_floor --port N --threads N``
in a folder with a ``certgate.toml`` serves the gateway exactly as ``certgate serve`` builds and
serves it (``configure_logging``, ``operator_app``, ``serve_app``), plus this one route.
"""

from __future__ import annotations

import argparse
import base64
import sys
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509 import verification
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from sqlalchemy import select

from certs.validation import _client_extension_policies
from gateway import clock
from gateway.assurance import LOA_CERTIFICATE
from gateway.commands.common import operator_app
from gateway.commands.serve import configure_logging, serve_app
from gateway.engine import get_engine
from gateway.login import CHALLENGE_STORE, prelogin_binding
from gateway.sessions import get_sessions
from gateway.signatures import verify_login_signature
from gateway.storage.database import get_database
from gateway.storage.models import Account
from tokens.login_message import login_message

bp = Blueprint("bench_floor", __name__)
EXTENSION = "bench.login_floor"


@dataclass(frozen=True)
class _Floor:
    # The engine's first stage for the first anchor: its store, with the extension policies
    # certs/validation.py gives pyca/cryptography's verifier (as bench/bench_validation.py).
    verifier: verification.PolicyBuilder
    intermediates: list[x509.Certificate]  # the configured intermediates
    account_id: int  # every floor login signs in to this account


def _floor(app: Flask) -> _Floor:
    with app.app_context():
        engine = get_engine()
        with get_database().connection() as connection:
            account_id = connection.execute(select(Account.id).limit(1)).scalar_one_or_none()
        if account_id is None:
            raise SystemExit("login floor: the database holds no account to sign in to")
        ca_policy, ee_policy = _client_extension_policies(engine.anchors[0].policy)
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store([anchor.certificate for anchor in engine.anchors]))
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        )
        return _Floor(verifier, list(engine.intermediates), int(account_id))


@bp.post("/bench/login-floor")
def login_floor() -> Response:
    body = request.get_json()
    leaf = x509.load_der_x509_certificate(base64.b64decode(body["certificate"]))
    signature = base64.b64decode(body["signature"])
    now = clock.now()
    config = current_app.config
    prelogin = request.cookies.get(config["PRELOGIN_COOKIE"], "")
    found = current_app.extensions[CHALLENGE_STORE].consume(
        body["challenge_id"], binding_hash=prelogin_binding(prelogin), at=now
    )
    if found is None or found.used_at is not None or now >= found.expires_at:
        abort(400)
    message = login_message(config["PUBLIC_ORIGIN"], found.id, found.nonce)
    verify_login_signature(leaf, body["signature_algorithm"], signature, message)
    floor: _Floor = current_app.extensions[EXTENSION]
    floor.verifier.time(now).build_client_verifier().verify(leaf, floor.intermediates)
    sessions = get_sessions()
    with get_database().connection():
        started = sessions.start(
            floor.account_id, ("swk", "pin"), acr=LOA_CERTIFICATE, at=now, previous_token=None
        )
    response = jsonify({"ok": True, "csrf_token": started.record.csrf_token})
    sessions.set_cookie(response, started.token)
    return response


def floor_app() -> Flask:
    app = operator_app(serve=True)
    app.extensions[EXTENSION] = _floor(app)
    app.register_blueprint(bp)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    arguments = parser.parse_args(argv)
    configure_logging()
    serve_app(floor_app(), host="127.0.0.1", port=arguments.port, threads=arguments.threads)


if __name__ == "__main__":
    main(sys.argv[1:])
