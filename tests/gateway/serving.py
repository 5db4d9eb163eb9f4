"""A Flask app on a real waitress server in a thread, started and stopped the way waitress
supports.

``server.close()`` from the test's thread while ``server.run()`` polls in another closes the
listening socket and the trigger under the poll loop, which now and then fails at teardown, and
leaves the loop and the worker threads running for as long as a client keeps a connection open
(the session's browser does). Here the worker threads are shut down first (letting running
tasks finish: a finished task still pulls the trigger), then the loop's own thread, which polls
in short steps and looks at a stop flag between them, closes every channel, the listener and the
trigger, and the thread is joined.

Stopping does not write to the trigger from the test's thread: twice in some thirty full runs
the trigger's write end was already closed at teardown (``EBADF``) after the test had passed,
and no closer of it was found in the suite's own code. The loop's stop flag needs no
descriptor, so teardown no longer depends on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

JOIN_TIMEOUT = 10.0
# How long the loop waits in one poll: the most a stop waits for it.
POLL_SECONDS = 0.05


class ServedApp:
    """A waitress server whose ``url`` is known before the app exists (the app's public origin
    is usually that URL): assign ``app``, then ``start()``."""

    def __init__(self, *, threads: int = 2) -> None:
        from waitress.server import create_server

        self.app: Flask | None = None
        self.server: Any = create_server(self._dispatch, host="127.0.0.1", port=0, threads=threads)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="waitress", daemon=True)

    def _dispatch(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        assert self.app is not None, "assign ServedApp.app before requests arrive"
        return self.app(environ, start_response)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        """waitress's loop (``server.run()``), one poll at a time until ``stop()`` asks; then
        this thread closes what the loop watched."""
        server = self.server
        try:
            while server._map and not self._stopping.is_set():
                server.asyncore.loop(
                    timeout=POLL_SECONDS,
                    map=server._map,
                    use_poll=server.adj.asyncore_use_poll,
                    count=1,
                )
        finally:
            self._close_everything()

    def _close_everything(self) -> None:
        """Close the listener, the client channels and the trigger: the loop's whole map."""
        socket_map = self.server._map
        for dispatcher in list(socket_map.values()):
            if hasattr(dispatcher, "outbuf_lock"):
                dispatcher.handle_close()  # a client channel: also wakes a worker waiting on it
            else:
                dispatcher.close()
        socket_map.clear()

    def stop(self) -> None:
        # Workers first: a task that has just answered still pulls the trigger to wake the loop,
        # so the trigger must outlive every worker. ``shutdown`` lets running tasks finish.
        self.server.task_dispatcher.shutdown()
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=JOIN_TIMEOUT)
            assert not self._thread.is_alive(), "waitress did not stop"
        else:
            self._close_everything()  # never started (an empty map if it ran and ended)


@contextmanager
def serving(*, threads: int = 2) -> Iterator[ServedApp]:
    """A ``ServedApp``, stopped on the way out whatever happened."""
    served = ServedApp(threads=threads)
    try:
        yield served
    finally:
        served.stop()
