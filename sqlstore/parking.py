"""Connections kept checked out between the store's lone statements.

Checking a connection out of SQLAlchemy's pool and back in costs about
7 µs and walks a dozen objects (the fairy, its record, the queue's lock
and condition, the pool's events): close to the indexed SELECT it serves
on SQLite, and more of it once the CPU's caches have gone cold between
two API calls. The store's autocommit engine runs nothing but these
statements, so up to ``capacity`` of its connections stay checked out
between calls and go from one call to the next here, most recently used
first: the pool is touched when the park is empty or full.

What the pool would do is still done: a connection held longer than the
recycle age goes back to the pool, which replaces it; a dropped
connection empties the park as SQLAlchemy empties its pool; dispose()
returns every parked connection; and a forked child can forget() the park
instead of sharing its parent's sockets.
"""

from __future__ import annotations

import time
import weakref
from typing import List, Tuple

from sqlalchemy.engine import Engine

_Parked = Tuple[object, float]  # (pooled connection, when it left the pool)

# What a forked child inherited: held, never closed, since closing a
# driver connection would end the parent's session on the shared socket.
_inherited: List[_Parked] = []


class ConnectionPark:
    """A LIFO of pooled connections, kept checked out while idle."""

    def __init__(self, engine: Engine, capacity: int, recycle: float):
        self._engine = engine
        self._capacity = capacity
        # A negative recycle age is SQLAlchemy's "never".
        self._recycle = recycle if recycle >= 0 else float("inf")
        self._idle: List[_Parked] = []
        # A park dropped without dispose() still gives its connections back.
        weakref.finalize(self, _give_back, self._idle)

    def take(self) -> _Parked:
        """A connection and when it left the pool; parked ones first."""
        while True:
            try:
                connection, since = self._idle.pop()
            except IndexError:
                return self._engine.raw_connection(), time.monotonic()
            if time.monotonic() - since < self._recycle:
                return connection, since
            connection.close()  # the pool replaces it when next asked

    def park(self, parked: _Parked) -> None:
        """Keep a connection for the next call, or return it to the pool."""
        if len(self._idle) < self._capacity:
            self._idle.append(parked)
        else:
            parked[0].close()

    def dispose(self) -> None:
        """Return every parked connection to the pool."""
        _give_back(self._idle)

    def discard(self) -> None:
        """Drop every parked connection: the server has dropped them."""
        while self._idle:
            connection, _since = self._idle.pop()
            try:
                connection.invalidate()
            except Exception:  # a dead connection may fail to close; it is gone
                pass

    def forget(self) -> None:
        """In a forked child: let go of the parent's connections, untouched."""
        _inherited.extend(self._idle)
        self._idle.clear()


def _give_back(idle: List[_Parked]) -> None:
    while idle:
        connection, _since = idle.pop()
        connection.close()
