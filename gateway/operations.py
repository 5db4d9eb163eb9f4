"""What operators and load balancers ask of a running gateway: ``/healthz`` (the process
answers), ``/readyz`` (the database and the shared state store answer too), and Prometheus
metrics at ``/metrics``; and the one clear answer when a backing service is down.

Metrics come from prometheus_client, because ``certgate serve --workers N`` runs N processes
behind one port and a scrape reaches any one of them: its multiprocess mode (each process
writes its counters to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``, the scrape adds them
up) is what makes the figures the whole server's, and writing that by hand would repeat it.
Values read at scrape time — the age of each CRL and the single-logout queue — are the
answering process's own reading (each process loads the CRLs itself; the queue is a table).

Outages: Redis or the database unreachable answers ``503 unavailable`` with one log line, no
traceback per request; nothing is kept in a broken state, so the next request after the
service returns succeeds (the database pool checks a connection before handing it out).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import InternalServerError

from certs.revocation.ocsp import OcspClient
from certs.revocation.status import RevocationState, RevocationStatus
from gateway.errors import Unavailable

log = logging.getLogger("certgate.gateway")

REDIS_EXTENSION = "certgate.redis"
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"

LOGINS = Counter(
    "certgate_logins",
    "Logins by method (token, tls, password, sms, qr) and outcome (ok or the error code).",
    ["method", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "certgate_request_duration_seconds",
    "Time to answer a request, by endpoint.",
    ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
OCSP_ERRORS = Counter(
    "certgate_ocsp_errors",
    "OCSP checks that got no fresh, authoritative answer (responder down, bad response).",
)
STATE_STORE_ERRORS = Counter(
    "certgate_backend_unavailable",
    "Requests answered 503 because a backing service did not answer.",
    ["service"],
)


class CountingOcspClient(OcspClient):
    """``OcspClient`` that counts the checks ending without an answer (``OCSP_ERRORS``)."""

    def status(self, *args: Any, **kwargs: Any) -> RevocationStatus:
        answer = super().status(*args, **kwargs)
        if answer.state is RevocationState.UNAVAILABLE:
            OCSP_ERRORS.inc()
        return answer


class _ScrapeTimeCollector(Collector):
    """The CRL ages and the single-logout queue of one app, read when scraped."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from gateway.clock import EXTENSION as CLOCK
        from gateway.engine import EXTENSION as ENGINE

        now = self.app.extensions[CLOCK].now()
        ages = GaugeMetricFamily(
            "certgate_crl_age_seconds",
            "Seconds since the thisUpdate of the newest CRL loaded from each source.",
            labels=["source"],
        )
        engine = self.app.extensions.get(ENGINE)
        if engine is not None and engine.crls is not None:
            for source, crls in engine.crls.loaded().items():
                if crls:
                    newest = max(crl.this_update for crl in crls)
                    ages.add_metric([source], (now - newest).total_seconds())
        yield ages
        queue = GaugeMetricFamily(
            "certgate_logout_queue_depth",
            "Single-logout messages waiting for delivery (pending, including retries).",
        )
        try:
            queue.add_metric([], float(_logout_queue_depth(self.app)))
        except Exception as exc:  # noqa: BLE001 - a scrape answers what it can
            log.warning("metrics: single-logout queue not read: %s", exc.__class__.__name__)
        yield queue


def _logout_queue_depth(app: Flask) -> int:
    from gateway.sso.models import DELIVERY_PENDING, LogoutDelivery
    from gateway.storage.database import get_database

    with get_database(app).connection() as connection:
        count = connection.execute(
            select(func.count())
            .select_from(LogoutDelivery)
            .where(LogoutDelivery.state == DELIVERY_PENDING)
        ).scalar_one()
    return int(count)


def _start_timer() -> None:
    g.certgate_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("certgate_started")
    if started is not None:
        REQUEST_SECONDS.labels(request.endpoint or "unknown").observe(time.perf_counter() - started)
    return response


def _count_logins(app: Flask) -> None:
    """Every login ends in exactly one audit record with event "login": count it there."""
    from gateway.audit import get_audit_log

    audit_log = get_audit_log(app)
    append = audit_log.append

    def counted(entry: Any) -> int:
        try:
            return int(append(entry))
        finally:
            if entry.event == "login":
                LOGINS.labels(entry.method or "unknown", entry.outcome).inc()

    audit_log.append = counted  # type: ignore[method-assign]


def _unreachable(service: str, error: Exception) -> Response:
    from gateway.http import _handle_certgate_error

    STATE_STORE_ERRORS.labels(service).inc()
    log.warning(
        "%s unreachable on %s %s: %s",
        service,
        request.method,
        request.path,
        error.__class__.__name__,
    )
    return _handle_certgate_error(Unavailable(f"{service} unreachable"))


def _redis_down(error: RedisError) -> Response:
    return _unreachable("redis", error)


def _database_down(error: DBAPIError) -> Response:
    # The audit trail is in the database that just failed: writing the refusal there would
    # only fail again.
    g.certgate_skip_audit = True
    return _unreachable("database", error)


def _failed_late(error: InternalServerError) -> Response:
    """An exception after the view (an after-request hook reading the database that just went
    away) reaches Flask as a 500; an outage still answers 503 ``unavailable``."""
    from gateway.http import _handle_unexpected

    cause = error.original_exception
    if isinstance(cause, RedisError):
        return _redis_down(cause)
    if isinstance(cause, OperationalError | InterfaceError):
        return _database_down(cause)
    if isinstance(cause, Exception):
        return _handle_unexpected(cause)
    return _handle_unexpected(error)


def healthz() -> Response:
    return jsonify({"status": "ok"})


def readyz() -> tuple[Response, int]:
    from gateway.storage.database import get_database

    checks: dict[str, str] = {}
    try:
        with get_database().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = exc.__class__.__name__
    client = current_app.extensions.get(REDIS_EXTENSION)
    if client is not None:
        try:
            client.ping()
            checks["redis"] = "ok"
        except RedisError as exc:
            checks["redis"] = exc.__class__.__name__
    ready = all(value == "ok" for value in checks.values())
    status = 200 if ready else 503
    body: dict[str, Any] = {"ok": ready, "checks": checks}
    if not ready:
        body["error"] = "unavailable"
    return jsonify(body), status


def metrics() -> Response:
    if os.environ.get(MULTIPROCESS_DIRECTORY):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        shared = generate_latest(registry)
    else:
        shared = generate_latest(REGISTRY)
    local = CollectorRegistry()
    local.register(_ScrapeTimeCollector(current_app._get_current_object()))  # type: ignore[attr-defined]
    return Response(shared + generate_latest(local), mimetype=CONTENT_TYPE_LATEST)


def connect_state_store(app: Flask) -> Any:
    """The Redis client of ``state_store = "redis"`` (kept for /readyz), else None. Nothing is
    asked of Redis here: a gateway starts while Redis is away and answers 503 until it is
    back."""
    if app.config["STATE_STORE"] != "redis":
        return None
    from gateway.storage.redis_state import connect

    client = connect(app.config["REDIS_URL"])
    app.extensions[REDIS_EXTENSION] = client
    return client


def ocsp_client(redis_client: Any) -> OcspClient:
    """The OCSP client of the certificate engine: its answers counted for /metrics, and cached
    in Redis for every process when there is one."""
    from certs.fetch import OCSP_MAX_RESPONSE_BYTES, HttpFetcher
    from gateway.engine import OCSP_TIMEOUT

    cache = None
    if redis_client is not None:
        from gateway.storage.redis_state import RedisOcspCache

        cache = RedisOcspCache(redis_client)
    return CountingOcspClient(
        HttpFetcher(max_bytes=OCSP_MAX_RESPONSE_BYTES),
        timeout=OCSP_TIMEOUT,
        max_response_bytes=OCSP_MAX_RESPONSE_BYTES,
        cache=cache,
    )


def init_app(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_error_handler(RedisError, _redis_down)
    # Connection refused, closed by a restarting server, or timed out: the database is away.
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(InterfaceError, _database_down)
    app.register_error_handler(InternalServerError, _failed_late)
    _count_logins(app)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/readyz", "readyz", readyz)
    app.add_url_rule("/metrics", "metrics", metrics)
