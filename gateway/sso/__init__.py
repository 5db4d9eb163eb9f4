"""Single sign-on: CertGate as the identity provider of other applications.

``init_app(app)`` is the one entry the app factory calls. The package holds the tables
(``models``), the client registry (``clients``), signing keys (``keys``), the record of which
clients took part in which gateway session (``participation``), the operator commands
(``commands``), the OpenID Connect provider (``oidc/``), the CAS 3.0 server (``cas``), single
logout (``logout``: ``end_session_everywhere`` and the delivery worker) and the account page's
applications (``applications``). Imports stay inside ``init_app`` so that importing the models
(the schema checks do) loads nothing else.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from gateway.sso import applications, cas, clients, keys, logout
    from gateway.sso.oidc import init_app as init_oidc

    clients.init_app(app)
    keys.init_app(app)
    init_oidc(app)
    app.register_blueprint(cas.bp)
    applications.init_app(app)
    logout.init_app(app)
