"""QR-code login (扫码登录): a browser shows a QR code, a person's signed-in phone scans it, sees
where the login is asked for, and confirms; the browser that asked, and only that browser,
is then signed in to the phone's account (acr ``urn:certgate:loa:1``, amr ``["mca"]``).

- ``browser.py``: ``POST /api/v1/login/qr`` and ``GET /api/v1/login/qr/<ticket>`` (JSON, long
  poll or server-sent events), bound to a secret cookie only the requesting browser holds;
- ``mobile.py``: the phone's ``/api/v1/mobile/qr/scan|confirm|cancel`` and the phone-width web
  app at ``/m/`` that stands in for the platform's mobile app;
- ``tickets.py``: the tickets (database table, ``models.py``) and the waiting browsers.

``init_app(app)`` is the one entry the app factory calls, after sessions, limits and the pages.
Imports stay inside it so that importing the models (the schema checks do) loads nothing else.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from datetime import timedelta

    from gateway.qr import browser, mobile
    from gateway.qr.tickets import EXTENSION, Purger, QrLogins, SqlQrTicketStore, TicketWatch
    from gateway.storage.database import get_database

    store = SqlQrTicketStore(get_database(app))
    app.extensions[EXTENSION] = QrLogins(
        store=store,
        watch=TicketWatch(slots=app.config["QR_WAIT_SLOTS"]),
        purger=Purger(store),
        ttl=timedelta(seconds=app.config["QR_TTL"]),
        cookie_name=app.config["QR_COOKIE"],
        address_limit=app.config["QR_ADDRESS_LIMIT"],
    )
    app.register_blueprint(browser.bp)
    app.register_blueprint(mobile.bp)
    app.register_blueprint(mobile.pages)
