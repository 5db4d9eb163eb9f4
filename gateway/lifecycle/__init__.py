"""The account's life from the service agreements: verification codes and the senders that
deliver them, registration, SMS login, password reset and change, agreement versions and
consent; notices (in-site messages and security notices), binding a USB key from the account
page, real-name level 2, and cancellation.

``init_app(app)`` is the one entry the app factory calls, after the accounts, sessions and limits
exist. Imports stay inside it so that importing the models (the schema checks do) loads
nothing else.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from gateway.lifecycle import (
        agreements,
        binding,
        codes,
        credentials,
        notices,
        pages,
        realname,
        registration,
        sign_in,
    )

    codes.init_app(app)
    notices.init_app(app)
    sign_in.init_app(app)
    agreements.init_app(app)
    registration.init_app(app)
    credentials.init_app(app)
    binding.init_app(app)
    realname.init_app(app)
    pages.init_app(app)
