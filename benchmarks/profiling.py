"""Where one call of our store spends its time, and how its SQL is planned.

cProfile runs around a batch of calls of each operation; each function's
own time is put into a layer by where the function lives (sqlstore, the
SDK's token objects, SQLAlchemy's pool, engine and SQL layers, the
driver with the time it waits for the server, the standard library).
cProfile slows pure-Python code more than C code, so the layers are
shown as shares of the profiled time next to the unprofiled median.

The statements our store sends are caught with SQLAlchemy's
``before_cursor_execute`` event, and those it runs straight on the driver
at ``sqlstore.direct.execute_on_cursor``, then run again under EXPLAIN,
with their own parameters, to show which index each one uses.
"""

from __future__ import annotations

import cProfile
import collections
import pstats
import re
import sqlite3
import statistics
import time
from typing import Dict, List, Tuple

from sqlalchemy import event
from sqlalchemy.engine import Engine

from sqlstore import direct

from . import data, databases, settings
from .sidework import OwnUsers

LAYERS = (
    "sqlstore",
    "SDK token objects",
    "SQLAlchemy pool",
    "SQLAlchemy engine & results",
    "SQLAlchemy SQL (cache keys, params)",
    "SQLAlchemy dialect, types, events",
    "driver + server wait",
    "stdlib & builtins",
)
_DRIVER_BUILTINS = ("psycopg2", "sqlite3", "socket", "select", "poll", "_ssl")


def layer_of(key: Tuple[str, int, str]) -> str:
    """The layer a cProfile function key belongs to; None for the harness."""
    filename, _, name = key
    path = filename.replace("\\", "/")
    if "/benchmarks/" in path:
        return None
    if "/sqlstore/" in path:
        return "sqlstore"
    if "/zohocrmsdk/" in path:
        return "SDK token objects"
    if "/sqlalchemy/pool/" in path:
        return "SQLAlchemy pool"
    if "/sqlalchemy/engine/" in path:
        return "SQLAlchemy engine & results"
    if "/sqlalchemy/sql/" in path:
        return "SQLAlchemy SQL (cache keys, params)"
    if "/sqlalchemy/" in path:
        return "SQLAlchemy dialect, types, events"
    if "/pymysql/" in path or "/psycopg2/" in path:
        return "driver + server wait"
    if filename == "~" and any(word in name for word in _DRIVER_BUILTINS):
        return "driver + server wait"
    return "stdlib & builtins"


def _short(key: Tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    parts = filename.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-2:])}:{line}({name})"


def profile_calls(calls) -> dict:
    """Layers (µs per call) and the top functions of one batch of calls."""
    profiler = cProfile.Profile()
    profiler.enable()
    for call in calls:
        call()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    layers: Dict[str, float] = collections.Counter()
    functions: List[Tuple[float, str]] = []
    for key, (_, _, own, _, _) in stats.items():
        layer = layer_of(key)
        if layer is None:
            continue
        layers[layer] += own
        functions.append((own, _short(key)))
    scale = 1e6 / len(calls)
    functions.sort(reverse=True)
    return {
        "layers": {name: layers.get(name, 0.0) * scale for name in LAYERS},
        "top": [(name, own * scale) for own, name in functions[:8]],
    }


class DirectHook:
    """Sees the statements our store runs straight on the driver.

    Those skip SQLAlchemy's cursor events; ``sqlstore.direct`` sends them
    all through one function, wrapped here for the duration of a probe.
    """

    def __init__(self, around):
        self._original = direct.execute_on_cursor
        original = self._original

        def wrapped(cursor, sql, arguments):
            around(original, cursor, sql, arguments)

        direct.execute_on_cursor = wrapped

    def remove(self) -> None:
        direct.execute_on_cursor = self._original


class ExecuteClock:
    """Time spent inside cursor.execute (driver and server) during a call.

    Measured with two SQLAlchemy events rather than a profiler, so it
    barely slows the call; a COMMIT sent by the pool or a transaction's
    end falls outside it.
    """

    def __init__(self):
        self.spent = 0
        self._started = 0

    def __enter__(self):
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        self._direct = DirectHook(self._timed)
        return self

    def __exit__(self, *_exc):
        event.remove(Engine, "before_cursor_execute", self._before)
        event.remove(Engine, "after_cursor_execute", self._after)
        self._direct.remove()

    def _timed(self, run, cursor, sql, arguments):
        self._before()
        try:
            run(cursor, sql, arguments)
        finally:
            self._after()

    def _before(self, *_args):
        self._started = time.perf_counter_ns()

    def _after(self, *_args):
        self.spent += time.perf_counter_ns() - self._started


def timed_batch(calls) -> dict:
    """Unprofiled medians (µs): whole call, inside execute, the rest."""
    totals, inside, outside = [], [], []
    with ExecuteClock() as clock:
        for call in calls:
            clock.spent = 0
            start = time.perf_counter_ns()
            call()
            total = time.perf_counter_ns() - start
            totals.append(total)
            inside.append(clock.spent)
            outside.append(total - clock.spent)
    return {
        "median": statistics.median(totals) / 1e3,
        "execute": statistics.median(inside) / 1e3,
        "python": statistics.median(outside) / 1e3,
    }


def profile_store(subject, calls: int) -> Dict[str, dict]:
    """Profile and unprofiled medians of every operation on one store."""
    users = OwnUsers(data.PROFILE_BASE, max(100, min(calls, 1000)))
    users.seed(subject)
    results = {}
    for operation in settings.OPERATIONS:
        timed_batch(users.prepared(subject, operation, 20))  # warm-up
        timing = timed_batch(users.prepared(subject, operation, calls))
        profiled = profile_calls(users.prepared(subject, operation, calls))
        profiled.update(timing)
        results[operation] = profiled
    return results


# -- query plans ---------------------------------------------------------------


class StatementCatcher:
    """The distinct statements our store's engines send, with parameters."""

    def __init__(self):
        self.caught: List[Tuple[str, str, object]] = []
        self.operation = None

    def __enter__(self):
        event.listen(Engine, "before_cursor_execute", self._on_execute)
        self._direct = DirectHook(self._on_direct)
        return self

    def __exit__(self, *_exc):
        event.remove(Engine, "before_cursor_execute", self._on_execute)
        self._direct.remove()

    def _on_direct(self, run, cursor, sql, arguments):
        self._on_execute(None, cursor, sql, arguments, None, False)
        run(cursor, sql, arguments)

    def _on_execute(self, _conn, _cursor, statement, parameters, _ctx, _many):
        if self.operation is not None:
            self.caught.append((self.operation, statement, parameters))


def catch_statements(subject) -> List[Tuple[str, str, object]]:
    # Users of its own, saved first, so that each save takes the path it
    # takes in the timed run (a refresh updates, a new grant inserts).
    users = OwnUsers(data.PROFILE_BASE + 2_000_000, 10)
    users.seed(subject)
    with StatementCatcher() as catcher:
        for operation in settings.OPERATIONS:
            calls = users.prepared(subject, operation, 1)
            catcher.operation = operation
            calls[0]()
            catcher.operation = None
    return catcher.caught


def explain_all(subject, sqlite_path=None) -> List[dict]:
    """The plan of each SELECT and UPDATE our store sent, per operation."""
    plans = []
    for operation, statement, parameters in catch_statements(subject):
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb not in ("SELECT", "UPDATE"):
            continue
        plan = _explain(subject.backend, statement, parameters, sqlite_path)
        plans.append({
            "operation": operation,
            "statement": _where(statement, verb),
            "plan": plan,
        })
    return plans


def _where(statement: str, verb: str) -> str:
    flat = " ".join(statement.split())
    tail = flat[flat.find(" WHERE "):] if " WHERE " in flat else ""
    return f"{verb} …{tail}"[:120]


def _explain(backend: str, statement: str, parameters, sqlite_path) -> str:
    if backend == "SQLite":
        connection = sqlite3.connect(sqlite_path)
        try:
            rows = connection.execute(
                "EXPLAIN QUERY PLAN " + statement, parameters
            ).fetchall()
        finally:
            connection.close()
        return "; ".join(row[-1] for row in rows)
    if backend == "PostgreSQL":
        return _explain_pg(statement, parameters)
    return _explain_mysql(statement, parameters)


def _explain_pg(statement: str, parameters) -> str:
    connection = databases.pg_connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + statement, parameters)
            lines = [row[0] for row in cursor.fetchall()]
    finally:
        connection.rollback()
        connection.close()
    nodes = []
    for line in lines:
        match = re.search(r"((?:[A-Z][a-z]+ )*(?:Scan|Sort|Limit|Update)[^(]*)", line)
        if match:
            nodes.append(match.group(1).strip())
    return " → ".join(nodes)


def _explain_mysql(statement: str, parameters) -> str:
    connection = databases.mysql_connect(autocommit=False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + statement, parameters)
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        connection.rollback()
        connection.close()
    return "; ".join(
        f"{row.get('type')} on {row.get('key') or 'no index'}, "
        f"rows≈{row.get('rows')}"
        + (f", {row['Extra']}" if row.get("Extra") else "")
        for row in rows
    )
