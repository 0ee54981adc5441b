"""A client-side deadline for psycopg2, which has no read timeout of its own.

libpq waits for the server's answer without end. When the server, or a
proxy or pooler in front of it, stops answering while its host's TCP stack
still does, nothing ends the wait: the server-side statement_timeout never
runs, and keepalives and the TCP user timeout are answered by the kernel.
The call, and the thread making it, would hang until the server came back.

Here one watchdog thread shuts the socket of a statement, commit or
rollback still waiting at its deadline. libpq then fails the call as a
closed connection, which SQLAlchemy drops from the pool as a disconnect.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import socket
import threading
import time
from typing import Dict, Optional, Set, Tuple


class _Watchdog:
    """Shuts the sockets of calls past their deadline, from one thread."""

    def __init__(self):
        self._cond = threading.Condition()
        self._armed: Dict[int, Tuple[float, int]] = {}  # ticket: (when, fd)
        self._fired: Set[int] = set()
        self._tickets = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._wake_at = float("inf")  # when the watchdog looks next

    def arm(self, fd: int, seconds: float) -> int:
        when = time.monotonic() + seconds
        with self._cond:
            ticket = next(self._tickets)
            self._armed[ticket] = (when, fd)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="sqlstore-deadline", daemon=True
                )
                self._thread.start()
            elif when < self._wake_at:
                self._cond.notify()  # only then: a wake-up costs a switch
        return ticket

    def disarm(self, ticket: int) -> bool:
        """Forget the call; True when its deadline had passed."""
        with self._cond:
            self._armed.pop(ticket, None)
            if ticket in self._fired:
                self._fired.discard(ticket)
                return True
            return False

    def _watch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for ticket, (when, fd) in list(self._armed.items()):
                    if when <= now:
                        del self._armed[ticket]
                        self._fired.add(ticket)
                        _shut(fd)
                self._wake_at = min(
                    (when for when, _fd in self._armed.values()), default=float("inf")
                )
                wait = self._wake_at - now
                self._cond.wait(wait if wait != float("inf") else None)


_WATCHDOG = _Watchdog()


def _shut(fd: int) -> None:
    # Through a duplicate, so that the connection's own descriptor stays
    # libpq's to close; shutdown() acts on the socket both share.
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    with contextlib.closing(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Deadline:
    """Arms the watchdog around one call of a connection.

    A class rather than a generator-based context manager: it wraps every
    statement the store sends to PostgreSQL, and costs a third as much.
    """

    __slots__ = ("_connection", "_seconds", "_ticket")

    def __init__(self, connection, seconds: float):
        self._connection = connection
        self._seconds = seconds

    def __enter__(self) -> None:
        self._ticket = _WATCHDOG.arm(self._connection.fileno(), self._seconds)

    def __exit__(self, _kind, err, _traceback) -> bool:
        if _WATCHDOG.disarm(self._ticket) and err is not None:
            import psycopg2  # only here: the call failed past its deadline

            if isinstance(err, psycopg2.Error):
                raise psycopg2.OperationalError(
                    f"the server did not answer within {self._seconds:g} s; "
                    "the connection was closed"
                ) from err
        return False


@functools.lru_cache(maxsize=None)
def psycopg2_factories(seconds: float) -> dict:
    """``connect()`` arguments whose calls fail after ``seconds``."""
    import psycopg2.extensions

    class Cursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            with _Deadline(self.connection, seconds):
                return super().execute(query, vars)

        def executemany(self, query, vars_list):
            with _Deadline(self.connection, seconds):
                return super().executemany(query, vars_list)

    class Connection(psycopg2.extensions.connection):
        def commit(self):
            with _Deadline(self, seconds):
                return super().commit()

        def rollback(self):
            with _Deadline(self, seconds):
                return super().rollback()

    return {"connection_factory": Connection, "cursor_factory": Cursor}
