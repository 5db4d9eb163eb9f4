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

Only drivers with a positional parameter style (SQLite's ``qmark``) take the direct path,
which is where it was measured; with any other driver the statement runs through
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


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind parameter names, in the order the SQL takes them
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
                made = _prepare(self.statement, compiled, dialect)
            self._compiled[dialect] = made
            return made


def _row_class(keys: list[str]) -> type[tuple[Any, ...]]:
    return namedtuple("PreparedRow", keys, rename=True)  # noqa: PYI024


def _prepare(statement: Executable, compiled: SQLCompiler, dialect: Dialect) -> _Compiled:
    assert compiled.positiontup is not None
    names = tuple(compiled.positiontup)
    binds = compiled.binds
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
        defaults={name: binds[name].effective_value for name in names if not binds[name].required},
        bind_processors=tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        ),
        row=row,
        result_processors=result_processors,
    )
