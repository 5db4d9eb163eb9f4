"""The OpenID Connect provider: Authlib's authorization server (``provider``) and its routes
(``endpoints``)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from gateway.sso.oidc import endpoints, provider

    provider.init_app(app)
    app.register_blueprint(endpoints.bp)
