"""PC/SC readers and card insertion/removal, through pyscard's ``SCardGetStatusChange``.

``PcscWatcher`` runs one thread that waits on the PC/SC daemon for a change on any reader and calls
back with ``CardEvent``s. When no daemon runs (or pyscard is not installed) the watcher reports
itself unavailable once and keeps retrying quietly, so an agent started before ``pcscd`` still picks
it up later. Nothing here needs a card's cooperation: presence comes from the reader state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

# Milliseconds one SCardGetStatusChange may block; the wait returns at once on a change, so this
# only bounds how long ``stop()`` and a newly attached reader take to be noticed.
STATUS_WAIT_MS = 500
# Seconds between attempts to reach a PC/SC daemon that is not running.
RECONNECT_SECONDS = 2.0
# How long stopping waits for the watcher's thread.
STOP_SECONDS = 5.0
# The pseudo reader that PC/SC signals when a reader is attached or detached.
PNP_READER = "\\\\?PnP?\\Notification"

try:  # pyscard is the optional ``pcsc`` extra
    from smartcard import scard as _scard
except ImportError:  # pragma: no cover - exercised on machines without the extra
    _scard = None


class CardChange(StrEnum):
    INSERTED = "inserted"
    REMOVED = "removed"


@dataclass(frozen=True)
class CardEvent:
    change: CardChange
    reader: str
    atr: str  # hex, empty after removal


class PcscUnavailable(Exception):
    """No PC/SC daemon (or no pyscard): the reason, for one log line."""


def _check(result: int, what: str) -> None:
    if _scard is None:
        raise PcscUnavailable("pyscard is not installed")
    if result != _scard.SCARD_S_SUCCESS:
        raise PcscUnavailable(f"{what}: {_scard.SCardGetErrorMessage(result).strip()}")


class PcscContext:
    """One PC/SC context (``SCardEstablishContext``), released on ``close``."""

    def __init__(self) -> None:
        if _scard is None:
            raise PcscUnavailable("pyscard is not installed")
        result, self._context = _scard.SCardEstablishContext(_scard.SCARD_SCOPE_USER)
        _check(result, "SCardEstablishContext")

    def readers(self) -> list[str]:
        assert _scard is not None
        result, names = _scard.SCardListReaders(self._context, [])
        if result == _scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _check(result, "SCardListReaders")
        return list(names)

    def status(
        self, known: dict[str, int], timeout_ms: int
    ) -> tuple[bool, dict[str, tuple[int, bytes]]]:
        """Wait for a change against ``known`` (reader -> state).

        Returns (changed, reader -> (state, ATR)).
        """
        assert _scard is not None
        watched = [(name, state) for name, state in known.items()]
        result, states = _scard.SCardGetStatusChange(self._context, timeout_ms, watched)
        if result == _scard.SCARD_E_TIMEOUT:
            return False, {}
        if result == _scard.SCARD_E_CANCELLED:
            return False, {}
        _check(result, "SCardGetStatusChange")
        return True, {name: (int(state), bytes(atr)) for name, state, atr in states}

    def cancel(self) -> None:
        if _scard is not None:
            _scard.SCardCancel(self._context)

    def close(self) -> None:
        if _scard is not None:
            _scard.SCardReleaseContext(self._context)


def list_readers() -> list[str]:
    """Reader names, or ``PcscUnavailable`` when no PC/SC daemon answers."""
    context = PcscContext()
    try:
        return context.readers()
    finally:
        context.close()


def card_present(state: int) -> bool:
    return _scard is not None and bool(state & _scard.SCARD_STATE_PRESENT)


class PcscWatcher:
    """Calls ``on_event`` for each card inserted into or removed from any reader."""

    def __init__(
        self,
        on_event: Callable[[CardEvent], Any],
        on_unavailable: Callable[[str], Any] | None = None,
        *,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self._on_event = on_event
        self.reconnect_seconds = reconnect_seconds
        self.attempts = 0  # connection attempts so far
        self._on_unavailable = on_unavailable
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._context: PcscContext | None = None
        self._lock = threading.Lock()
        self._cards: dict[str, str] = {}  # reader -> ATR hex of the card in it
        self._thread = threading.Thread(target=self._run, name="certgate-pcsc", daemon=True)
        self.available: bool | None = None  # None until the first attempt
        self._reported = False

    def start(self) -> PcscWatcher:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the first attempt to reach PC/SC has finished (either way)."""
        return self._ready.wait(timeout)

    def cards(self) -> dict[str, str]:
        with self._lock:
            return dict(self._cards)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Ask the thread to end and wait up to ``timeout`` for it. A thread still inside a
        PC/SC call then is left behind (it is a daemon thread): the agent's Ctrl-C must not
        hang on a reader or a daemon that does not answer."""
        self._stop.set()
        with self._lock:
            if self._context is not None:
                self._context.cancel()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the PC/SC watcher did not stop within %.0f s; leaving it", timeout)

    def _unavailable(self, reason: str) -> None:
        self.available = False
        with self._lock:
            lost = list(self._cards)
            self._cards.clear()
        for reader in lost:  # the daemon went away: nothing can vouch for those cards now
            self._on_event(CardEvent(change=CardChange.REMOVED, reader=reader, atr=""))
        if not self._reported and self._on_unavailable is not None:
            self._reported = True  # said once; later retries stay quiet
            self._on_unavailable(reason)
        self._ready.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.attempts += 1
            try:
                context = PcscContext()
            except PcscUnavailable as error:
                self._unavailable(str(error))
                self._stop.wait(self.reconnect_seconds)
                continue
            with self._lock:
                self._context = context
            try:
                self._watch(context)
            except Exception as error:  # daemon gone, or pyscard failed: start over
                reason = str(error) if isinstance(error, PcscUnavailable) else repr(error)
                self._unavailable(reason)
                self._stop.wait(self.reconnect_seconds)
            finally:
                with self._lock:
                    self._context = None
                context.close()

    def _watch(self, context: PcscContext) -> None:
        assert _scard is not None
        known: dict[str, int] = {PNP_READER: _scard.SCARD_STATE_UNAWARE}
        for reader in context.readers():
            known[reader] = _scard.SCARD_STATE_UNAWARE
        first = True
        while not self._stop.is_set():
            changed, states = context.status(known, 0 if first else STATUS_WAIT_MS)
            if first:
                self.available = True
                changed = True
            if not changed:
                continue
            readers_changed = False
            for name, (state, atr) in states.items():
                if name == PNP_READER:
                    readers_changed = readers_changed or bool(state & _scard.SCARD_STATE_CHANGED)
                    known[name] = state & ~_scard.SCARD_STATE_CHANGED
                    continue
                known[name] = state & ~_scard.SCARD_STATE_CHANGED
                self._record(name, state, atr, announce=not first)
            if readers_changed:
                current = set(context.readers())
                for gone in set(known) - current - {PNP_READER}:
                    del known[gone]
                    self._record(gone, 0, b"", announce=True)
                for new in current - set(known):
                    known[new] = _scard.SCARD_STATE_UNAWARE
            if first:
                first = False
                self._ready.set()

    def _record(self, reader: str, state: int, atr: bytes, *, announce: bool) -> None:
        present = card_present(state)
        with self._lock:
            was = self._cards.get(reader)
            if present and was is None:
                self._cards[reader] = atr.hex()
            elif not present and was is not None:
                del self._cards[reader]
            else:
                return
        if not announce:
            return
        change = CardChange.INSERTED if present else CardChange.REMOVED
        self._on_event(CardEvent(change=change, reader=reader, atr=atr.hex() if present else ""))
