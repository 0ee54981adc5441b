"""Lone statements run straight on the driver's cursor: the lookups and
the UPDATE of a refresh, which the SDK makes on every API call, and the
rest of the store's single statements with them.

The SDK asks the store for its token before every API call. SQLAlchemy's
Connection and result machinery costs more per call than the indexed
SELECT itself (about 80 µs against 10 µs on SQLite), so the lookups skip
it: each statement is compiled once per dialect, its parameters and
result columns are converted by the same SQLAlchemy column types as
everywhere else, and the connection still comes from the engine's pool.
Driver errors are raised as SQLAlchemy's, with disconnects marked, so the
store's retries treat them the same.
"""

from __future__ import annotations

import collections
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select

from .parking import ConnectionPark


class _Plan:
    """One statement compiled for one dialect, with its converters."""

    def __init__(self, statement, engine: Engine, column_keys=None):
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.sql = compiled.string
        self.names: Optional[Sequence[str]] = (
            compiled.positiontup if dialect.positional else None
        )
        self.binders: Dict[str, Optional[Callable]] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        columns = list(getattr(statement, "selected_columns", ()))
        readers = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in columns
        ]
        # Only the columns that need converting are visited: on most
        # backends that is one or two timestamps.
        self.readers: List[Tuple[int, Callable]] = [
            (index, read) for index, read in enumerate(readers) if read
        ]
        self.row_type = collections.namedtuple(
            "DirectRow", [column.name for column in columns]
        )

    def arguments(self, parameters: dict):
        converted = {}
        for name, value in parameters.items():
            binder = self.binders.get(name)
            converted[name] = binder(value) if binder else value
        if self.names is None:
            return converted
        return tuple(converted[name] for name in self.names)

    def row(self, values: tuple):
        if self.readers:
            values = list(values)
            for index, read in self.readers:
                values[index] = read(values[index])
        return self.row_type._make(values)


class DirectQueries:
    """Runs cached statements on pooled driver connections in autocommit.

    capacity, recycle: how many connections stay checked out between calls
        and for how long at most (see ``sqlstore.parking``).
    """

    def __init__(self, engine: Engine, capacity: int, recycle: float):
        self.engine = engine
        self._plans: Dict[tuple, _Plan] = {}
        self._driver_error = engine.dialect.loaded_dbapi.Error
        self._park = ConnectionPark(engine, capacity, recycle)

    def dispose(self) -> None:
        """Give the parked connections back to the engine's pool."""
        self._park.dispose()

    def forget(self) -> None:
        """Let go of the parked connections without using them."""
        self._park.forget()

    def rows(self, statement: Select, parameters: dict) -> list:
        """The rows a SELECT returns, converted by its column types."""
        plan = self._plan(statement, None)
        fetched = self._run(plan.sql, plan.arguments(parameters), fetch=True)
        return [plan.row(values) for values in fetched]

    def rowcount(self, statement, parameters: dict) -> int:
        """Run an UPDATE or DELETE; an UPDATE sets the parameters' columns."""
        plan = self._plan(statement, tuple(sorted(parameters)))
        return self._run(plan.sql, plan.arguments(parameters), fetch=False)

    def _plan(self, statement, column_keys) -> _Plan:
        # Statements are module-level constants or cached per lookup shape,
        # so their identity (and the columns an UPDATE sets) names the plan.
        key = (id(statement), column_keys)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(statement, self.engine, column_keys)
        return plan

    def _run(self, sql: str, arguments, fetch: bool):
        try:
            parked = self._park.take()
        except self._driver_error as err:
            raise self._wrapped(err, sql) from err
        connection = parked[0]
        cursor = None
        try:
            cursor = connection.cursor()
            execute_on_cursor(cursor, sql, arguments)
            result = cursor.fetchall() if fetch else cursor.rowcount
        except self._driver_error as err:
            raise self._wrapped(err, sql, parked, cursor) from err
        except BaseException:
            # Interrupted half-way (KeyboardInterrupt, a signal's exception):
            # the connection's state is unknown, so the pool must not have it.
            connection.invalidate()
            raise
        finally:
            if cursor is not None:
                _close_quietly(cursor)
        self._park.park(parked)
        return result

    def _wrapped(self, err, sql, parked=None, cursor=None) -> DBAPIError:
        dialect = self.engine.dialect
        connection = parked[0] if parked is not None else None
        gone = connection is not None and dialect.is_disconnect(
            err, connection.dbapi_connection, cursor
        )
        if gone:
            # As SQLAlchemy does: a server that dropped one connection has
            # most likely dropped them all, so the whole pool is replaced.
            connection.invalidate(err)
            self._park.discard()
            self.engine.dispose()
        elif connection is not None:
            self._park.park(parked)
        return DBAPIError.instance(
            sql,
            None,
            err,
            self._driver_error,
            hide_parameters=True,
            connection_invalidated=gone,
            dialect=dialect,
        )


def execute_on_cursor(cursor, sql: str, arguments) -> None:
    """Where every lone statement reaches the driver.

    SQLAlchemy's cursor events do not see these statements; tools that
    time or record them (the benchmarks do) wrap this function instead.
    """
    cursor.execute(sql, arguments)


def _close_quietly(cursor) -> None:
    try:
        cursor.close()
    except Exception:  # a cursor of a dead connection; it is dropped anyway
        pass


class ConnectionQueries:
    """The same two calls through SQLAlchemy Connections.

    For an engine of the application's own, or in-memory SQLite: there a
    statement needs a transaction of its own, and calls share a lock.
    """

    def __init__(self, engine: Engine, serial):
        self.engine = engine
        self._serial = serial

    def dispose(self) -> None:
        """Nothing is held between calls."""

    def forget(self) -> None:
        """Nothing is held between calls."""

    def rows(self, statement, parameters: dict) -> list:
        with self._serial, self.engine.begin() as conn:
            return list(conn.execute(statement, parameters))

    def rowcount(self, statement, parameters: dict) -> int:
        with self._serial, self.engine.begin() as conn:
            return conn.execute(statement, parameters).rowcount
