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
    """Runs cached statements on pooled driver connections in autocommit."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._plans: Dict[tuple, _Plan] = {}
        self._driver_error = engine.dialect.loaded_dbapi.Error

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
            connection = self.engine.raw_connection()
        except self._driver_error as err:
            raise self._wrapped(err, sql) from err
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(sql, arguments)
            return cursor.fetchall() if fetch else cursor.rowcount
        except self._driver_error as err:
            raise self._wrapped(err, sql, connection, cursor) from err
        finally:
            if cursor is not None:
                _close_quietly(cursor)
            connection.close()  # back to the pool

    def _wrapped(self, err, sql, connection=None, cursor=None) -> DBAPIError:
        dialect = self.engine.dialect
        gone = connection is not None and dialect.is_disconnect(
            err, connection.dbapi_connection, cursor
        )
        if gone:
            # As SQLAlchemy does: a server that dropped one connection has
            # most likely dropped them all, so the whole pool is replaced.
            connection.invalidate(err)
            self.engine.dispose()
        return DBAPIError.instance(
            sql,
            None,
            err,
            self._driver_error,
            hide_parameters=True,
            connection_invalidated=gone,
            dialect=dialect,
        )


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

    def rows(self, statement, parameters: dict) -> list:
        with self._serial, self.engine.begin() as conn:
            return list(conn.execute(statement, parameters))

    def rowcount(self, statement, parameters: dict) -> int:
        with self._serial, self.engine.begin() as conn:
            return conn.execute(statement, parameters).rowcount
