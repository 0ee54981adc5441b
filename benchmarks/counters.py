"""Counting what one store call makes SQLAlchemy and the pool do.

Listeners on the Engine and Pool classes see every engine a store makes,
however many it keeps, without reaching into the store. On SQLite the
driver's trace callback also sees the BEGIN and COMMIT that the sqlite3
module issues on its own.
"""

from __future__ import annotations

import collections
import re
import sqlite3
from typing import Counter

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

_WORD = re.compile(r"[A-Za-z]+")


def first_word(sql: str) -> str:
    match = _WORD.search(sql)
    return match.group(0).upper() if match else "?"


class Counters:
    """Event counts, with a phase switched on and off around the calls."""

    def __init__(self):
        self.counts: Counter = collections.Counter()
        self.active = False

    def add(self, name: str) -> None:
        if self.active:
            self.counts[name] += 1

    def install(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._on_execute)
        for name in ("begin", "commit", "rollback"):
            event.listen(Engine, name, self._on(f"sqlalchemy {name}"))
        for name in ("connect", "checkout", "checkin", "reset"):
            event.listen(Pool, name, self._on(f"pool {name}"))
        event.listen(Pool, "connect", _trace_sqlite(self))

    def _on(self, name: str):
        def listener(*_args, **_kwargs):
            self.add(name)

        return listener

    def _on_execute(self, _conn, _cursor, statement, _params, _context, many):
        self.add(f"execute {first_word(statement)}")

    def watch_sqlite(self, connection: sqlite3.Connection) -> None:
        """Count what SQLite itself runs on a raw connection."""
        connection.set_trace_callback(self._on_sqlite)

    def _on_sqlite(self, statement: str) -> None:
        self.add(f"sqlite {first_word(statement)}")

    def take(self) -> dict:
        taken = dict(self.counts)
        self.counts.clear()
        return taken


def _trace_sqlite(counters: Counters):
    def on_connect(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            counters.watch_sqlite(dbapi_connection)

    return on_connect
