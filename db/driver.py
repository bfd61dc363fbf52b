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

Rows come back as plain tuples. What a statement may be is checked when it is built: every value
a parameter (no literal compared in the statement, no expanding IN), every typed column one whose
result processor needs no driver type code. Listeners get no execution context and cannot rewrite
the statement (`retval=True`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Dialect
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import Compiled

Processor = Callable[[Any], Any]

#: What every statement is compiled with once, when it is built, to refuse what it cannot run.
_CHECKED_WITH: Dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]


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
            results = []
            for position, column in enumerate(getattr(self.statement, "selected_columns", ())):
                process = column.type.dialect_impl(dialect).result_processor(dialect, None)
                if process is not None:
                    results.append((position, process))
            found = self._compiled[dialect] = _Compiled(compiled.string, binds, results)
        return found

    def rows(self, connection: Connection, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run on `connection`, which must be in autocommit or inside a transaction it began."""
        return self._run(connection, [parameters], fetch=True)

    def execute(self, connection: Connection, parameters: Mapping[str, Any]) -> None:
        """As `rows`, for a statement that returns none."""
        self._run(connection, [parameters], fetch=False)

    def execute_many(self, connection: Connection, parameters: Sequence[Mapping[str, Any]]) -> None:
        """As `execute`, once per set of parameters, pipelined by psycopg: one round trip's wait
        for the whole batch."""
        self._run(connection, parameters, fetch=False, many=True)

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
        pooled = connection.connection
        driver: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        cursor = driver.cursor()
        try:
            events = connection.dispatch
            listening = bool(events.before_cursor_execute or events.after_cursor_execute)
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
