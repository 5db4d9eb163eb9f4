"""`certgate serve`: the gateway on waitress.

waitress is pure Python and production-grade, with a thread pool and no fork model: a SoftHSM
or CRL-refresh thread started in the app keeps working, and nothing forks after start-up.

``--workers N`` runs N waitress processes on one listening socket, which the parent opens and
the children inherit; the kernel hands each new connection to one of them. A login's
signature check and certificate validation hold the GIL, so threads alone use one core; N
processes use N. Each child forks before it builds its app, so no thread, database connection
or Redis connection crosses a fork; the parent only opens the socket, checks the configuration
once (migrations included) and restarts a child that dies. Several processes share state only
through the database and Redis, so ``--workers`` needs ``state_store = "database"`` or
``"redis"`` (docs/scaling.md). Kept rather than gunicorn: one server in production and tests,
no new dependency, and the same waitress settings as one process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import time

import click
from flask import Flask

from gateway.commands.common import OperatorInputError, operator_app
from gateway.config import parse_origin

# prometheus_client reads this when first imported, so it is set before the app is built.
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"


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
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes sharing the listening socket (needs state_store database or redis).",
)
def serve(host: str, port: int, threads: int, workers: int) -> None:
    """Run the gateway (configured by ./certgate.toml and CERTGATE_* variables)."""
    configure_logging()
    if workers > 1:
        serve_workers(host=host, port=port, threads=threads, workers=workers)
        return
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


def serve_app(
    app: Flask, *, host: str, port: int, threads: int, sockets: list[socket.socket] | None = None
) -> None:
    """Serve ``app`` on waitress until interrupted: how ``certgate serve`` runs the gateway."""
    from waitress import serve as waitress_serve

    # No waitress trusted_proxy: the gateway reads X-Forwarded-For itself, and only from
    # CERTGATE_TRUSTED_PROXIES (gateway/proxy.py). waitress 3 deletes X-Forwarded-* headers by
    # default when it has no trusted_proxy, which would leave every client behind a proxy with
    # the proxy's address (one shared rate limit, the proxy in the audit trail): keep them.
    where: dict[str, object] = {"sockets": sockets} if sockets else {"host": host, "port": port}
    waitress_serve(
        app,
        **where,
        threads=threads,
        ident="certgate",
        clear_untrusted_proxy_headers=False,
        max_request_body_size=app.config["MAX_CONTENT_LENGTH"] * 2,
    )


# A child that dies is started again after this pause (a crash loop costs no busy spinning).
RESTART_PAUSE = 1.0


def serve_workers(*, host: str, port: int, threads: int, workers: int) -> None:
    """N waitress processes on one socket, supervised by this one (see the module docstring)."""
    if not os.environ.get(MULTIPROCESS_DIRECTORY):
        # Metrics of all workers, added up at scrape time (gateway/operations.py).
        os.environ[MULTIPROCESS_DIRECTORY] = tempfile.mkdtemp(prefix="certgate-metrics-")
    checked = operator_app()  # configuration and migrations, once, before any child starts
    state_store = checked.config["STATE_STORE"]
    public_origin = checked.config["PUBLIC_ORIGIN"]
    from gateway.storage.database import get_database

    get_database(checked).close()
    del checked
    if state_store == "memory":
        raise OperatorInputError(
            'configuration: --workers needs state_store = "database" or "redis": '
            'with "memory" each process would keep its own challenges and limits'
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1024)
    listener.set_inheritable(True)
    bound_port = listener.getsockname()[1]
    click.echo(
        f"CertGate listening on http://{host}:{bound_port} with {workers} workers "
        f"(public origin {public_origin})",
        err=True,
    )
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                app = operator_app(serve=True)
                serve_app(app, host=host, port=bound_port, threads=threads, sockets=[listener])
            except BaseException:  # noqa: BLE001 - a child reports and exits, never returns
                logging.getLogger("certgate.gateway").exception("worker %d stopped", number)
                code = 1
            finally:
                os._exit(code)
        children[pid] = number

    def stop(_signal: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for number in range(workers):
        start(number)
    from prometheus_client import multiprocess

    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        ended = children.pop(pid) if pid in children else None
        multiprocess.mark_process_dead(pid)
        if ended is not None and not stopping:
            logging.getLogger("certgate.gateway").warning(
                "worker %d (pid %d) ended; starting it again", ended, pid
            )
            time.sleep(RESTART_PAUSE)
            if not stopping:
                start(ended)
    listener.close()
