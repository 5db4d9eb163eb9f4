"""`certgate serve`: the gateway on waitress.

waitress is pure Python and production-grade, with a thread pool and no fork model: a SoftHSM
or CRL-refresh thread started in the app keeps working, and nothing forks after start-up.

``--workers N`` runs N waitress processes on one port. A login's signature check and
certificate validation hold the GIL, so threads alone use one core; N processes use N. Each
child forks before it builds its app, so no thread, database connection or Redis connection
crosses a fork; the parent only checks the configuration once (migrations included), listens,
hands connections to the workers (below) and restarts a child that dies. Several processes
share state only through the database and Redis, so ``--workers`` needs ``state_store =
"database"`` or ``"redis"`` (docs/scaling.md). Kept rather than gunicorn: one server in
production and tests, no new dependency, the same waitress settings as one process, and
gunicorn's workers share one socket, the uneven spreading described below.

The parent accepts every connection itself and hands it to the next worker that is serving,
in turn (the descriptor passed over a Unix socket pair, as Node's cluster module does on Linux
for the same reason). Left to the kernel, connections do not spread: on one shared socket the
worker that happens to be awake wins every race to ``accept``, and with a socket per worker
(``SO_REUSEPORT``) a hash of the addresses picks, which puts 6 or more of 8 connections on one of
two workers in about a third of the runs. A keep-alive connection stays with the worker that
took it, so such a split lasts: measured with 8 keep-alive clients, two processes were then no
faster than one (bench/bench_scale.py). Handed out in turn, 8 connections are 4 and 4. A worker
still starting, or being started again after it died, is given nothing until it says it
serves; if none serves yet, connections wait in the listening socket's backlog. At start-up the
parent accepts nothing until every worker serves (or STARTUP_WAIT after the first one does, so
that a worker that cannot start does not keep the others idle): the keep-alive connections a
proxy or the first clients open at once would otherwise all go to the worker that was ready
first, and stay there.
"""

from __future__ import annotations

import gc
import logging
import os
import selectors
import signal
import socket
import tempfile
import time
from typing import Any

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
    help="Processes serving the port (needs state_store database or redis).",
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
    app: Flask,
    *,
    host: str,
    port: int,
    threads: int,
    handed: socket.socket | None = None,
) -> None:
    """Serve ``app`` on waitress until interrupted: how ``certgate serve`` runs the gateway.

    With ``handed`` (a worker of ``--workers``), connections come from the parent over that
    socket instead of from a listening socket of its own."""
    from waitress.server import create_server

    # The app built, its objects (about 150,000: modules, the ORM's mappings, configuration)
    # live as long as the process. gc.freeze() takes them out of the collector's generations: a
    # full collection walked them all, about 75 ms, and such a pause landed on whichever
    # requests were running (bench/bench_scale.py: p99 at 8 clients on two workers 72-143 ms
    # without, 55-77 ms with; docs/scaling.md).
    gc.freeze()
    # No waitress trusted_proxy: the gateway reads X-Forwarded-For itself, and only from
    # CERTGATE_TRUSTED_PROXIES (gateway/proxy.py). waitress 3 deletes X-Forwarded-* headers by
    # default when it has no trusted_proxy, which would leave every client behind a proxy with
    # the proxy's address (one shared rate limit, the proxy in the audit trail): keep them.
    settings: dict[str, Any] = {
        "threads": threads,
        "ident": "certgate",
        "clear_untrusted_proxy_headers": False,
        "max_request_body_size": app.config["MAX_CONTENT_LENGTH"] * 2,
    }
    if handed is not None:
        server: Any = _handed_connections_server(app, handed, host, port, settings)
        handed.send(READY)
    else:
        try:
            server = create_server(app, host=host, port=port, **settings)
        except OSError as exc:
            raise cannot_listen(host, port, exc) from None
    server.run()


# A child that dies is started again after this pause (a crash loop costs no busy spinning).
RESTART_PAUSE = 1.0
# At start-up, connections wait for every worker this long at most after the first one serves.
STARTUP_WAIT = 10.0
# What a worker sends the parent once it serves; each connection handed to it is one message.
READY = b"r"


def serve_workers(*, host: str, port: int, threads: int, workers: int) -> None:
    """N waitress processes on one port, supervised by this one (see the module docstring)."""
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
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1024)
    except OSError as exc:
        listener.close()
        raise cannot_listen(host, port, exc) from None
    listener.setblocking(False)
    bound_port = listener.getsockname()[1]
    click.echo(
        f"CertGate listening on http://{host}:{bound_port} with {workers} workers "
        f"(public origin {public_origin})",
        err=True,
    )
    # One socket pair per worker slot, kept across restarts: [0] the parent's end, [1] the
    # worker's. A connection handed to a worker that dies before taking it waits in the pair
    # for the worker started in its place.
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(workers)]
    for ours, _theirs in pairs:
        ours.setblocking(False)
    Supervisor(listener, pairs, host, bound_port, threads).run()


class Supervisor:
    """The parent of ``--workers``: starts the workers, hands them connections in turn, and
    starts again one that dies (after RESTART_PAUSE), until SIGTERM or SIGINT."""

    def __init__(
        self,
        listener: socket.socket,
        pairs: list[tuple[socket.socket, socket.socket]],
        host: str,
        port: int,
        threads: int,
    ) -> None:
        self.listener, self.pairs = listener, pairs
        self.host, self.port, self.threads = host, port, threads
        self.children: dict[int, int] = {}  # pid -> worker number
        self.serving: list[int] = []  # worker numbers that said they serve, in start order
        # False until every worker has served once, or STARTUP_WAIT has passed since the first
        # did (first_served: when, None before): until then connections wait in the backlog.
        self.started = False
        self.first_served: float | None = None
        self.turn = 0
        self.restarts: dict[int, float] = {}  # worker number -> when to start it again
        self.stopping = False
        self.terminated = False  # SIGTERM sent to the workers
        self.selector = selectors.DefaultSelector()

    def run(self) -> None:
        from prometheus_client import multiprocess

        # Signals only set a flag: the loop below notices within its timeout.
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for number, (ours, _theirs) in enumerate(self.pairs):
            self.selector.register(ours, selectors.EVENT_READ, number)
            self._start(number)
        try:
            while self.children or (self.restarts and not self.stopping):
                if self.stopping and not self.terminated:
                    self._terminate_children()
                self._accept_while_serving()
                for key, _events in self.selector.select(timeout=0.2):
                    self._read_from_worker(key.fileobj, key.data)  # type: ignore[arg-type]
                self._reap(multiprocess.mark_process_dead)
                now = time.monotonic()
                for number, when in list(self.restarts.items()):
                    if now >= when and not self.stopping:
                        del self.restarts[number]
                        self._start(number)
        finally:
            self.selector.close()
            self.listener.close()
            for ours, theirs in self.pairs:
                ours.close()
                theirs.close()

    def _stop(self, _signal: int, _frame: object) -> None:
        self.stopping = True

    def _terminate_children(self) -> None:
        self.terminated = True
        self.restarts.clear()
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _listening(self) -> bool:
        try:
            self.selector.get_key(self.listener)
        except KeyError:
            return False
        return True

    def _accept_while_serving(self) -> None:
        """Listen for connections only while some worker serves (at start-up: every worker, or
        the first one for STARTUP_WAIT): until then they wait in the listening socket's backlog
        rather than in a worker that cannot answer yet."""
        if not self.started and self.first_served is not None:
            self.started = (
                len(self.serving) == len(self.pairs)
                or time.monotonic() >= self.first_served + STARTUP_WAIT
            )
        wanted = self.started and bool(self.serving) and not self.stopping
        if wanted and not self._listening():
            self.selector.register(self.listener, selectors.EVENT_READ, None)
        elif not wanted and self._listening():
            self.selector.unregister(self.listener)

    def _read_from_worker(self, ready: socket.socket, number: int | None) -> None:
        if number is None:
            self._hand_out_connections()
            return
        try:
            said = ready.recv(16)
        except BlockingIOError:
            return
        if said == READY and number not in self.serving:
            self.serving.append(number)
            if self.first_served is None:
                self.first_served = time.monotonic()
            self._accept_while_serving()

    def _hand_out_connections(self) -> None:
        while self.serving:
            try:
                connection, _address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # a connection reset before it was accepted, out of descriptors
                logging.getLogger("certgate.gateway").warning(
                    "accepting a connection failed", exc_info=True
                )
                return
            with connection:
                self._hand_to_next_worker(connection)

    def _hand_to_next_worker(self, connection: socket.socket) -> None:
        for _ in range(len(self.serving)):
            number = self.serving[self.turn % len(self.serving)]
            self.turn += 1
            try:
                socket.send_fds(self.pairs[number][0], [READY], [connection.fileno()])
                return
            except BlockingIOError:  # that worker has a full queue of connections: the next
                continue
        # Every worker has thousands of connections queued: this one is refused (closed).
        logging.getLogger("certgate.gateway").warning(
            "every worker's queue is full: a connection was closed unanswered"
        )

    def _start(self, number: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                self.selector.close()
                self.listener.close()
                for index, (ours, theirs) in enumerate(self.pairs):
                    ours.close()
                    if index != number:
                        theirs.close()
                handed = self.pairs[number][1]
                app = operator_app(serve=True)
                serve_app(app, host=self.host, port=self.port, threads=self.threads, handed=handed)
            except BaseException:  # noqa: BLE001 - a child reports and exits, never returns
                logging.getLogger("certgate.gateway").exception("worker %d stopped", number)
                code = 1
            finally:
                os._exit(code)
        self.children[pid] = number

    def _reap(self, mark_dead: Any) -> None:
        while self.children:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            number = self.children.pop(pid, None)
            mark_dead(pid)
            if number is None:
                continue
            if number in self.serving:
                self.serving.remove(number)
            if not self.stopping:
                logging.getLogger("certgate.gateway").warning(
                    "worker %d (pid %d) ended; starting it again", number, pid
                )
                self.restarts[number] = time.monotonic() + RESTART_PAUSE


def _handed_connections_server(
    app: Flask, handed: socket.socket, host: str, port: int, settings: dict[str, Any]
) -> Any:
    """A waitress server whose connections arrive over ``handed`` (one descriptor per message
    from the parent) instead of from ``accept``: waitress serves a connection the same way
    wherever it came from, and has no hook for this, so its TCP server is subclassed at the
    two points that touch the listening socket (waitress is pinned in the lock file)."""
    from waitress.adjustments import Adjustments
    from waitress.server import TcpWSGIServer
    from waitress.task import ThreadedTaskDispatcher

    class HandedConnectionsServer(TcpWSGIServer):
        def accept_connections(self) -> None:
            self.accepting = True  # no listen(): the pair is connected already

        def getsockname(self) -> tuple[str, str]:
            return host, str(port)

        def accept(self) -> tuple[socket.socket, Any] | None:
            try:
                message, descriptors, _flags, _address = socket.recv_fds(self.socket, 16, 1)
            except (BlockingIOError, InterruptedError):
                return None
            if not message:
                # The parent is gone (its end of the pair closed): waitress stops on SystemExit,
                # and the worker exits rather than serve on with no one to restart it.
                raise SystemExit
            if not descriptors:
                return None
            connection = socket.socket(fileno=descriptors[0])
            try:
                return connection, connection.getpeername()
            except OSError:  # the client left before this worker took the connection
                connection.close()
                return None

    adjustments = Adjustments(**settings)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adjustments.threads)
    return HandedConnectionsServer(
        app,
        {},
        True,
        handed,
        dispatcher=dispatcher,
        adj=adjustments,
        bind_socket=False,
        sockinfo=(socket.AF_INET, socket.SOCK_STREAM, None, (host, port)),
    )


def cannot_listen(host: str, port: int, exc: OSError) -> OperatorInputError:
    """The operator's error for an address the server cannot listen on (taken, not local)."""
    return OperatorInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
