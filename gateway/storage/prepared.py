"""Statements every login runs, compiled once per dialect and run on the driver's cursor.

A certificate login runs a handful of small statements: the account look-up, the new session,
the audit record and its head. Executed through ``Connection.execute`` each paid SQLAlchemy's
per-call machinery (cache-key lookup, execution context, parameter processing, result
metadata) at several times the cost of the statement in SQLite, and together that was the
largest single part of a login's server time (bench/bench_login.py; ``make bench``).

``Prepared`` keeps what SQLAlchemy does well and skips only the per-call part: the statement is
still built with Core and compiled by SQLAlchemy for the engine's dialect (so the SQL, the
parameter style and the column types are SQLAlchemy's, on SQLite and PostgreSQL alike), and it
runs inside the caller's SQLAlchemy transaction on the same pooled connection. Each parameter
and result column goes through its type's own bind and result processors, so values read and
written are exactly what ``Connection.execute`` would give. Driver errors are raised as
SQLAlchemy's ``DBAPIError`` subclasses, as ``Connection.execute`` raises them.

Two parameter styles take the direct path: positional (SQLite's ``qmark``: a list in the
order the SQL takes them) and named (psycopg's ``pyformat``: the SQL's ``%(name)s`` and a dict).
On PostgreSQL a driver error goes through the connection's own error handling, so a connection
the server lost is invalidated (with the pool's older ones) exactly as after
``Connection.execute``. With any other driver, or a statement SQLAlchemy renders anew per call
(expanding ``IN``, literal-execute parameters), the statement runs through
``Connection.execute`` and the result is the same. Not for statements whose shape changes per
call, nor for ``executemany``: use Core there.
"""

from __future__ import annotations

import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

_Processor = Callable[[Any], Any] | None
_CURSOR = "certgate.prepared_cursor"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind parameter names, in the order the SQL takes them
    keys: tuple[str, ...] | None  # named style: each name as the SQL spells it; None: positional
    defaults: Mapping[str, Any]  # values the statement carries itself (``column == 1``)
    bind_processors: tuple[_Processor, ...]
    row: type[tuple[Any, ...]] | None  # a NamedTuple class for SELECTs, None otherwise
    result_processors: tuple[_Processor, ...]


class PreparedResult:
    """Rows (named tuples, with the statement's column names) and the affected row count."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def one_or_none(self) -> Any:
        if len(self.rows) > 1:
            raise exc.MultipleResultsFound("more than one row where at most one was expected")
        return self.rows[0] if self.rows else None


class Prepared:
    """A Core statement with fixed shape, compiled once per dialect (see the module docstring)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # Per dialect (one per engine, so weakly held): how to run the statement directly, or
        # None to run it through Core.
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled | None] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def execute(
        self, connection: Connection, parameters: Mapping[str, Any] | None = None
    ) -> PreparedResult:
        dialect = connection.dialect
        try:
            compiled = self._compiled[dialect]
        except KeyError:
            compiled = self._compile(dialect)
        values = parameters or {}
        if compiled is None:
            result = connection.execute(self.statement, dict(values))
            return PreparedResult(
                list(result.all()) if result.returns_rows else [], result.rowcount
            )
        defaults = compiled.defaults
        try:
            arguments = [
                value if processor is None else processor(value)
                for value, processor in zip(
                    (values[n] if n in values else defaults[n] for n in compiled.names),
                    compiled.bind_processors,
                    strict=True,
                )
            ]
        except KeyError as missing:
            raise exc.ArgumentError(f"no value for bind parameter {missing}") from None
        if compiled.keys is not None:
            named = dict(zip(compiled.keys, arguments, strict=True))
            return _execute_named(connection, compiled, named)
        cursor = connection.connection.cursor()
        try:
            cursor.execute(compiled.sql, arguments)
            rows: list[Any] = []
            if compiled.row is not None:
                make, processors = compiled.row, compiled.result_processors
                rows = [
                    make(
                        *(
                            value if processor is None else processor(value)
                            for value, processor in zip(raw, processors, strict=True)
                        )
                    )
                    for raw in cursor.fetchall()
                ]
            return PreparedResult(rows, cursor.rowcount)
        except dialect.loaded_dbapi.Error as error:
            raise exc.DBAPIError.instance(
                compiled.sql,
                arguments,
                error,
                dialect.loaded_dbapi.Error,
                dialect=dialect,
            ) from error
        finally:
            cursor.close()

    def _compile(self, dialect: Dialect) -> _Compiled | None:
        with self._lock:
            if dialect in self._compiled:
                return self._compiled[dialect]
            compiled = cast(ClauseElement, self.statement).compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            made = None
            if compiled.positional and compiled.positiontup is not None:
                made = _prepare(self.statement, compiled, dialect, tuple(compiled.positiontup))
            elif (
                dialect.paramstyle == "pyformat"
                and not compiled.positional
                and not compiled.post_compile_params
                and not compiled.literal_execute_params
            ):
                made = _prepare(self.statement, compiled, dialect, None)
            self._compiled[dialect] = made
            return made


def _row_class(keys: list[str]) -> type[tuple[Any, ...]]:
    return namedtuple("PreparedRow", keys, rename=True)  # noqa: PYI024


def _prepare(
    statement: Executable,
    compiled: SQLCompiler,
    dialect: Dialect,
    positions: tuple[str, ...] | None,
) -> _Compiled:
    """``positions``: the positional style's names in SQL order; None for the named style."""
    binds = compiled.binds
    spelled: tuple[str, ...] | None = None
    if positions is None:
        names = tuple(dict.fromkeys(compiled.bind_names.values()))
        escaped = compiled.escaped_bind_names
        spelled = tuple(escaped.get(name, name) for name in names)
    else:
        names = positions
    row: type[tuple[Any, ...]] | None = None
    result_processors: tuple[_Processor, ...] = ()
    if getattr(statement, "is_select", False):
        columns = statement.selected_columns  # type: ignore[attr-defined]
        # Unnamed columns (``count(*)``) are reached by position.
        keys = [column.key or f"_{n}" for n, column in enumerate(columns)]
        row = _row_class(keys)
        result_processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
    return _Compiled(
        sql=compiled.string,
        names=names,
        keys=spelled,
        defaults={name: binds[name].effective_value for name in names if not binds[name].required},
        bind_processors=tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        ),
        row=row,
        result_processors=result_processors,
    )


def _execute_named(
    connection: Connection, compiled: _Compiled, parameters: dict[str, Any]
) -> PreparedResult:
    if not connection.in_transaction():
        connection.begin()  # as Connection.execute's autobegin
    # One cursor per driver connection, kept in the pool's record of it (cleared when the
    # connection is replaced): psycopg's cursor keeps the dumpers and loaders it looked up, which
    # a new cursor per statement looked up again.
    pooled = connection.connection
    cursor = pooled.info.get(_CURSOR)
    if cursor is None:
        cursor = pooled.info[_CURSOR] = pooled.cursor()
    try:
        cursor.execute(compiled.sql, parameters)
        fetched = cursor.fetchall() if compiled.row is not None else []
        rowcount = cursor.rowcount
    except BaseException as error:
        del pooled.info[_CURSOR]  # closed by the handling below, or its connection is gone
        # Connection.execute's own handling: wraps a driver error in its DBAPIError subclass
        # and, when the server is gone, invalidates this connection and the pool's older ones.
        connection._handle_dbapi_exception(error, compiled.sql, parameters, cursor, None)
    rows: list[Any] = []
    if compiled.row is not None:
        make, processors = compiled.row, compiled.result_processors
        rows = [
            make(
                *(
                    value if processor is None else processor(value)
                    for value, processor in zip(raw, processors, strict=True)
                )
            )
            for raw in fetched
        ]
    return PreparedResult(rows, rowcount)
