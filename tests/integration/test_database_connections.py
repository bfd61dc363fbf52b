"""Pooled connections after their server side is gone (a database restart, a killed backend)."""

from __future__ import annotations

import gc
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, bindparam, column, event, exc, insert, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, Range

from db.driver import _CHECKED_WITH, DriverStatement
from db.engine import make_engine, make_sessions
from db.models import BookingItem, Resource, Seat
from domain.lifecycle import BookingStatus
from tests.support import first_event, new_key, seat_request, wait_for

# Engines of their own and killed backends: nothing here can share one rolled-back connection.
pytestmark = pytest.mark.commits


def _kill_backends(database_url: str, application_name: str) -> int:
    """Terminate the backends of `application_name`, and return once they are gone
    (pg_terminate_backend only signals them)."""
    killer = make_engine(database_url, pre_ping=False)
    try:
        with killer.connect() as conn:
            killed = len(conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ), {"name": application_name}).all())
    finally:
        killer.dispose()
    wait_for(lambda: _backends(database_url, application_name) == 0, what=f"the {application_name} backends to exit")
    return killed


def _use_then_kill(settings, **engine_options):  # type: ignore[no-untyped-def]
    name = f"ping-test-{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings.database_url, application_name=name, **engine_options)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert _kill_backends(settings.database_url, name) == 1
    return engine


def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced(settings):
    # A threshold of zero: any time back in the pool is past it, whatever the machine's speed.
    engine = _use_then_kill(settings, ping_after_idle=0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(settings):
    # The other side of the trade: the first use of a dead connection fails, and the pool
    # replaces it for the next one.
    engine = _use_then_kill(settings, ping_after_idle=60)
    with pytest.raises(exc.OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def _json_statement() -> DriverStatement:
    return DriverStatement(text("SELECT CAST(:doc AS jsonb) -> 'n', :plain").bindparams(bindparam("doc", type_=JSONB)))


def test_a_driver_statement_runs_typed_parameters_and_is_seen_by_listeners(settings):
    engine = make_engine(settings.database_url)
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: seen.append(sql))
    statement = _json_statement()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        assert statement.rows(conn, {"doc": {"n": [1, None]}, "plain": 7}) == [([1, None], 7)]
    assert seen == [statement.sql(engine.dialect)]
    with pytest.raises(RuntimeError, match="autocommit"), engine.connect() as conn:
        # Neither autocommit nor a transaction SQLAlchemy began: psycopg would open one behind its back.
        statement.rows(conn, {"doc": {}, "plain": 1})
    engine.dispose()


def test_a_driver_statement_on_a_dead_connection_fails_as_sqlalchemy_would_and_renews_the_pool(settings):
    name = f"driver-test-{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings.database_url, application_name=name, ping_after_idle=60)
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        for conn in (a, b, c):  # three pooled connections, all used a moment ago
            conn.execute(text("SELECT 1"))
    assert _kill_backends(settings.database_url, name) == 3
    statement = _json_statement()
    # Inside a transaction: nothing reaches the server before the statement (in autocommit, the
    # checkout's isolation-level switch would find the dead connection first).
    with pytest.raises(exc.OperationalError) as failed, engine.begin() as conn:
        statement.rows(conn, {"doc": {"n": 1}, "plain": 1})
    assert failed.value.connection_invalidated
    # Two at once, as two threads would take them: neither is one of the other dead connections.
    with engine.begin() as one, engine.begin() as two:
        assert [statement.rows(conn, {"doc": {"n": 2}, "plain": 1}) for conn in (one, two)] == [[(2, 1)]] * 2
    engine.dispose()


def test_the_accept_path_answers_503_when_its_database_connection_died_and_the_retry_succeeds(
    api, runtime, settings
):
    event_id, seats = first_event(runtime.context.sessions)
    assert api.book(seat_request(event_id, seats[:1])).status_code == 202  # a pooled connection, in use
    assert _kill_backends(settings.database_url, "bookings-worker") >= 1
    key, body = new_key(), seat_request(event_id, seats[1:2])
    refused = api.book(body, key=key)
    assert refused.status_code == 503, refused.text
    assert refused.json["error"]["code"] == "service_unavailable"
    assert api.book(body, key=key).status_code == 202


def test_a_driver_statement_that_meets_a_dead_connection_keeps_the_pool_within_its_size(settings):
    # One backend of four dies: its connection and the rest of its generation are replaced inside
    # the pool (as SQLAlchemy does), not by a second pool while the first still holds connections.
    name = f"driver-bound-{uuid.uuid4().hex[:8]}"
    gc.disable()  # a pool orphaned in a reference cycle would hold its connections until a collection
    try:
        _use_four_connections_of_which_one_dies(settings, name)
    finally:
        gc.enable()


def _use_four_connections_of_which_one_dies(settings, name):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.database_url, pool_size=2, application_name=name, pre_ping=False)
    sessions = make_sessions(engine)
    open_sessions = [sessions() for _ in range(4)]  # pool_size 2 + max_overflow 2
    for session in open_sessions:
        session.execute(text("SELECT 1"))
    _kill_backend(settings.database_url, open_sessions[0].connection().connection.driver_connection.info.backend_pid)
    with pytest.raises(exc.OperationalError):
        _json_statement().rows(open_sessions[0].connection(), {"doc": 1, "plain": 1})
    open_sessions[0].close()
    for session in open_sessions[1:]:  # the three live ones go back to the pool
        session.commit()
        session.close()
    again = [sessions() for _ in range(4)]
    for session in again:
        session.execute(text("SELECT 1"))
    assert _backends(settings.database_url, name) <= 4
    for session in again:
        session.close()
    engine.dispose()


@pytest.mark.parametrize("statement", [
    select(Seat.id).where(Seat.number == 5),  # a literal: a parameter the caller never passes
    select(Seat.id).where(Seat.id.in_(bindparam("ids", expanding=True))),  # expanded at execution
])
def test_a_driver_statement_refuses_what_it_cannot_run_when_it_is_built(statement):
    with pytest.raises(ValueError, match="DriverStatement"):
        DriverStatement(statement)


_items = BookingItem.__table__


@pytest.mark.parametrize(("statement", "reason"), [
    # Its rows would carry psycopg's range, not SQLAlchemy's: RETURNING skips result processors.
    (insert(_items).values(booking_id=bindparam("booking_id"), period=bindparam("period"), price=bindparam("price"))
     .returning(_items.c.period), "returns no typed column from INSERT"),
    (update(_items).where(_items.c.booking_id == bindparam("booking_id")).values(price=bindparam("price"))
     .returning(_items.c.id, _items.c.period), "returns no typed column from UPDATE"),
    # Keyword types are matched by name to the cursor's columns, which rows by position cannot do.
    (text("SELECT price, period FROM booking_items").columns(period=TSTZRANGE), "by position"),
    # Float and Numeric choose their result processor from the type code the driver reports.
    (select(Resource.lat).where(Resource.id == bindparam("id")), "driver's type code"),
])
def test_a_driver_statement_refuses_typed_columns_it_could_not_process(statement, reason):
    with pytest.raises(ValueError, match=reason):
        DriverStatement(statement)


def test_a_driver_statement_takes_returning_of_untyped_columns_and_positional_text_columns(settings):
    DriverStatement(insert(_items).values(booking_id=bindparam("booking_id"), price=bindparam("price"))
                    .returning(_items.c.id))
    statement = DriverStatement(text("SELECT tstzrange(CAST(:start AS timestamptz), NULL)").columns(
        column("period", TSTZRANGE)))
    engine = make_engine(settings.database_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        [(period,)] = statement.rows(conn, {"start": "2030-01-01T00:00:00Z"})
    engine.dispose()
    assert isinstance(period, Range) and period.upper is None  # SQLAlchemy's range, processed


def _rewrite(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
    return f"/* traced */ {statement}", parameters


def test_a_driver_statement_refuses_an_engine_with_a_listener_that_rewrites_statements(settings):
    engine = make_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", _rewrite, retval=True)
    statement = _json_statement()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        with pytest.raises(RuntimeError, match="retval=True"):
            statement.rows(conn, {"doc": 1, "plain": 2})
        assert conn.execute(text("SELECT 1")).scalar() == 1  # SQLAlchemy's own path still serves it
    engine.dispose()


def test_an_engine_is_refused_when_it_is_built_if_a_class_listener_rewrites_statements(settings):
    event.listen(Engine, "before_cursor_execute", _rewrite, retval=True)
    try:
        with pytest.raises(RuntimeError, match="retval=True"):
            make_engine(settings.database_url)
    finally:
        event.remove(Engine, "before_cursor_execute", _rewrite)


def _kill_backend(database_url: str, pid: int) -> None:
    _scalar(database_url, "SELECT pg_terminate_backend(:pid)", pid=pid)
    wait_for(lambda: not _scalar(database_url, "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", pid=pid),
             what=f"backend {pid} to exit")


def _backends(database_url: str, application_name: str) -> int:
    return int(_scalar(database_url, "SELECT count(*) FROM pg_stat_activity"
                       " WHERE application_name = :name AND datname = current_database()", name=application_name))


def _scalar(database_url: str, sql: str, **params: object) -> object:
    engine = make_engine(database_url, pre_ping=False)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()


#: Values that could be misread in an array's text form: quotes, backslashes, delimiters, braces,
#: the word NULL, blanks, other scripts; and every kind of value the hot paths send in arrays.
AWKWARD = ['plain', 'with "quotes"', "back\\slash", "a,b", "{braces}", "NULL", "null", "", " padded ",
           "line\nbreak", "ünïcödé ✓", '\\"', None]


@pytest.mark.parametrize(("cast", "values", "expected"), [
    ("text[]", AWKWARD, AWKWARD),
    ("uuid[]", [uuid.UUID(int=1), None, uuid.UUID(int=2**128 - 1)], [uuid.UUID(int=1), None, uuid.UUID(int=2**128 - 1)]),
    ("integer[]", [0, -7, 2**31 - 1, None], [0, -7, 2**31 - 1, None]),
    ("integer[]", [None, 1], [None, 1]),
    ("boolean[]", [True, False, None], [True, False, None]),
    ("timestamptz[]", [datetime(2026, 12, 7, 4, 5, 6, 789, tzinfo=UTC), None],
     [datetime(2026, 12, 7, 4, 5, 6, 789, tzinfo=UTC), None]),
    ("text[]", [BookingStatus.REQUESTED, None], ["requested", None]),
    ("text[]", [], []),
    ("uuid[]", [], []),
    ("text[]", [None], [None]),
])
def test_an_array_parameter_reaches_postgresql_as_the_list_it_was(settings, cast, values, expected):
    """Array parameters go in psycopg's binary format (db.driver: `%(name)b`): whatever the
    elements, PostgreSQL must read back the same list, equal to the same list sent as text."""
    statement = DriverStatement(text(f"SELECT CAST(:values AS {cast}), CAST(:values AS {cast}) = CAST(:as_text AS {cast})"))
    sql = statement._for(_CHECKED_WITH).sql
    assert "%(values)b" in sql
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            [(read, same)] = statement.rows(connection, {"values": values, "as_text": values})
            cursor = connection.connection.driver_connection.cursor()
            [(as_text,)] = cursor.execute(f"SELECT CAST(%s AS {cast})", [values]).fetchall()
    finally:
        engine.dispose()
    assert read == expected == as_text
    assert same is not False
