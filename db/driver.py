"""Statements of the hot paths, executed by psycopg on a connection SQLAlchemy lent.

SQLAlchemy still writes a `DriverStatement` (Core constructs, checked against the models) and
compiles it, once per dialect; its pool lends the connection and its `Connection` owns it. What
is skipped is SQLAlchemy's per-execution layer (execution context, bind and result processing,
result metadata): on the accept path and in a placement it cost more Python time than PostgreSQL
took to answer, about a fifth of their CPU (`bench.cpu_per_booking` before and after).

Kept from that layer, because callers rely on them (the API answers 503 to `OperationalError`):

- errors go through SQLAlchemy's own error path: they come out as its exception types, and a
  connection that died under the statement is invalidated with the pool's other connections of
  its generation, so no other request is lent a connection to the server that went away;
- the engine's `before_cursor_execute` / `after_cursor_execute` listeners see the statement
  (tracing, and `bench.capture`, which writes a booking's SQL as a pgbench script);
- the bind processors of typed parameters (JSONB, ranges) and the result processors of typed
  columns run, both found once per dialect.

Rows come back as plain tuples, processed by position. What a statement may be is checked when it
is built, so a statement it cannot run fails at import:

- every value is a parameter (no literal compared in the statement, no expanding IN);
- a typed result column has a result processor that needs no driver type code (Numeric and Float
  choose theirs from the cursor's description, which is never read here);
- the typed columns of `text().columns(...)` are given positionally (`column(name, type)`):
  keyword types are matched by name against the cursor's description, not by position;
- an INSERT, UPDATE or DELETE returns no typed column (RETURNING): its values would come back as
  the driver made them, without their result processors.

A bare `text()` declares no result types: its rows are the driver's values.

Listeners are called with no execution context (`context` is None), so only plain ones are
served: an engine with a `before_cursor_execute` listener registered with `retval=True` (which
may rewrite the statement, as SQL commenters and tracers do, keeping their state on the context)
is refused, when `db.engine.make_engine` builds it and again each time a statement runs on it.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.sql import ColumnElement, Executable
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import TextualSelect

Processor = Callable[[Any], Any]

#: What every statement is compiled with once, when it is built, to refuse what it cannot run.
_CHECKED_WITH: Dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]


#: A parameter the statement casts to an array type: `CAST(%(name)s AS uuid[])` as `text()` writes
#: it, or `%(name)s::UUID[]` as SQLAlchemy renders a typed bind.
_ARRAY_PARAMETER = re.compile(r"CAST\(%\((\w+)\)s AS [\w ]+\[\]\)|%\((\w+)\)s::[\w ]+\[\]")


def _arrays_in_binary(sql: str) -> str:
    """`sql` with its array parameters' placeholders asking psycopg for the binary format (`%(x)b`).

    psycopg adapts a list element by element in Python, and in the text format about ten times
    slower than in the binary one (500 UUIDs: 630 against 84 µs): in the expiry sweep's batch
    statements, a dozen arrays of 500, the text format was a third of the sweep's time. Only
    parameters cast to an array type are changed, so a value always has a type to be sent as."""
    names = {name for match in _ARRAY_PARAMETER.finditer(sql) for name in match.groups() if name}
    for name in names:
        sql = sql.replace(f"%({name})s", f"%({name})b")
    return sql


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: Bind processors of the parameters whose type has one (JSONB, ranges), by name.
    binds: dict[str, Processor]
    #: Result processors of the columns whose type has one, by position.
    results: list[tuple[int, Processor]]

    def bound(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(parameters)
        for name, process in self.binds.items():
            params[name] = process(params[name])
        return params

    def processed(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for position, process in self.results:
            values[position] = process(values[position])
        return tuple(values)


class DriverStatement:
    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # Per dialect object: what it compiles to can depend on the server it first connected to.
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()
        self._for(_CHECKED_WITH)  # a statement it cannot run fails at import, not on first use

    def sql(self, dialect: Dialect) -> str:
        return self._for(dialect).sql

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect)
        if found is None:
            compiled: Compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            if "POSTCOMPILE" in compiled.string:
                raise ValueError("a DriverStatement cannot expand parameters at execution (IN lists)")
            binds = {}
            for name, bind in compiled.binds.items():  # type: ignore[attr-defined]
                if bind.value is not None or bind.callable is not None:
                    raise ValueError(f"a DriverStatement takes every value as a parameter: {name} has one")
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    binds[name] = process
            results = _result_processors(self.statement, dialect)
            found = self._compiled[dialect] = _Compiled(_arrays_in_binary(compiled.string), binds, results)
        return found

    def rows(self, connection: Connection, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run on `connection`, which must be in autocommit or inside a transaction it began."""
        return self._run(connection, [parameters], fetch=True)

    def execute(self, connection: Connection, parameters: Mapping[str, Any]) -> None:
        """As `rows`, for a statement that returns none."""
        self._run(connection, [parameters], fetch=False)

    def execute_many(self, connection: Connection, parameters: Sequence[Mapping[str, Any]]) -> None:
        """As `execute`, once per set of parameters, pipelined by psycopg: one round trip's wait
        for the whole batch. One set is simply executed: entering and leaving psycopg's pipeline
        costs more than the statement (a placement's write-back, one booking, spent most of its
        Python time there)."""
        self._run(connection, parameters, fetch=False, many=len(parameters) != 1)

    def _run(
        self, connection: Connection, parameters: Sequence[Mapping[str, Any]], *, fetch: bool, many: bool = False
    ) -> list[tuple[Any, ...]]:
        autocommit = connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        if not (autocommit or connection.in_transaction()):
            # psycopg would open a transaction that SQLAlchemy does not know about.
            raise RuntimeError("a DriverStatement runs in autocommit or inside a begun transaction")
        compiled = self._for(connection.dialect)
        sql = compiled.sql
        batch = [compiled.bound(p) for p in parameters]
        params: Any = batch if many else batch[0]
        events = connection.dispatch
        listening = bool(events.before_cursor_execute or events.after_cursor_execute)
        if listening:  # a listener may have been added since the engine was built
            refuse_listeners_needing_context(connection)
        pooled = connection.connection
        driver: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        cursor = driver.cursor()
        try:
            if listening:
                events.before_cursor_execute(connection, cursor, sql, params, None, many)
            if many:
                cursor.executemany(sql, batch)
            else:
                cursor.execute(sql, params)
            rows = cursor.fetchall() if fetch else []
            if compiled.results:
                rows = [compiled.processed(row) for row in rows]
            if listening:
                events.after_cursor_execute(connection, cursor, sql, params, None, many)
            return rows
        except BaseException as ex:
            # SQLAlchemy's own error path for a statement it executed (private, stable across the
            # 2.1 series pinned in pyproject.toml): wraps a driver error into SQLAlchemy's class,
            # runs handle_error listeners, and on a disconnect invalidates this connection and the
            # pool's generation, so no thread is lent a dead connection and none is left open.
            connection._handle_dbapi_exception(ex, sql, params, cursor, None)  # type: ignore[arg-type]
        finally:
            cursor.close()


def _result_processors(statement: Executable, dialect: Dialect) -> list[tuple[int, Processor]]:
    """The result processors of the statement's typed columns, by position; raises ValueError for
    a typed column whose values could not be processed correctly here."""
    if isinstance(statement, UpdateBase):
        for column in statement.exported_columns:  # RETURNING
            if _result_processor(column, dialect) is not None:
                raise ValueError(
                    "a DriverStatement returns no typed column from"
                    f" {statement.__visit_name__.upper()}: {column} ({column.type}) would come back"
                    " unprocessed"
                )
        return []
    positional = not isinstance(statement, TextualSelect) or statement.positional
    results = []
    for position, column in enumerate(getattr(statement, "selected_columns", ())):
        process = _result_processor(column, dialect)
        if process is None:
            continue
        if not positional:
            raise ValueError(
                "a DriverStatement processes rows by position: give text().columns() the typed"
                f" column {column} ({column.type}) as column(name, type), not as a keyword"
            )
        results.append((position, process))
    return results


def _result_processor(column: ColumnElement[Any], dialect: Dialect) -> Processor | None:
    try:
        impl = column.type.dialect_impl(dialect)
        process: Processor | None = impl.result_processor(dialect, None)
    except Exception as ex:  # Numeric, Float: they need the cursor's type code to choose
        raise ValueError(
            f"a DriverStatement cannot process {column} ({column.type}): its result processor needs"
            " the driver's type code for the column"
        ) from ex
    return process


def refuse_listeners_needing_context(target: Engine | Connection) -> None:
    """Raise RuntimeError if the engine or connection has a listener that DriverStatement cannot
    serve: a `before_cursor_execute` registered with `retval=True`.

    SQLAlchemy wraps every listener registered without `retval=True` so that it returns the
    statement unchanged; what is left unwrapped was registered to rewrite it (SQLAlchemy's own
    wrapper, stable across the 2.1 series pinned in pyproject.toml).
    """
    for listener in target.dispatch.before_cursor_execute:
        if getattr(listener, "__name__", "") != "wrap_before_cursor_execute":
            raise RuntimeError(
                f"{type(target).__name__} has a before_cursor_execute listener registered with"
                f" retval=True ({getattr(listener, '__qualname__', listener)!r}); DriverStatement"
                " calls listeners without an execution context and cannot apply a rewritten"
                " statement"
            )
