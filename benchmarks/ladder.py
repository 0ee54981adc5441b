"""What each layer adds to one find by user, measured without a profiler.

The same lookup on our table, made seven ways, one call of each in turn
(the order rotating from call to call):

1. the driver alone, on a connection kept open;
2. the same through SQLAlchemy's pool, checked out and back per call;
3. the same SQL string on a SQLAlchemy Connection kept open
   (exec_driver_sql: execution context and result objects);
4. the same with a Connection made and closed per call;
5. a prebuilt Core select() with a bound parameter (compiled-cache
   lookup, parameter and result processing by the column types);
6. the same select() ordered newest first with LIMIT 1, the shape of the
   store's own lookup;
7. our store's find_token with an SDK probe token.

A rung's median minus its base rung's is what the added layer costs:
rung 3 is set against rung 1, every other against the one before it.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List

from sqlalchemy import bindparam, create_engine, select
from sqlalchemy.engine import Engine

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from . import data

RUNGS = (
    "driver on a kept connection",
    "+ pool checkout and return",
    "kept Connection, exec_driver_sql (vs the driver)",
    "+ a Connection per call (pool, autobegin, close)",
    "+ Core select() and column types",
    "+ ORDER BY updated_at DESC LIMIT 1, as the store asks",
    "+ sqlstore find_token (SDK token in and out)",
)
# The rung each one is set against.
BASES = (None, 0, 0, 2, 3, 4, 5)


def _engine(url: str) -> Engine:
    """An engine set up as our store sets up its autocommit engine."""
    from sqlstore import config

    try:
        return config.create_store_engine(url, autocommit=True)
    except TypeError:  # a sqlstore without the autocommit engine
        return create_engine(url, isolation_level="AUTOCOMMIT")


class Ladder:
    def __init__(self, subject, size: int):
        from sqlstore.model import oauthtoken

        self.store = subject.token_store
        # An engine, and so a connection, of its own for every rung: on a
        # server, a connection used a moment ago answers faster than one
        # whose server process has been idle, so each rung's connection is
        # used exactly once per turn, as the store's own is.
        self.engines = [_engine(subject.url) for _ in range(6)]
        self.statement = select(oauthtoken).where(
            oauthtoken.c.user_name == bindparam("key")
        )
        self.newest = self.statement.order_by(
            oauthtoken.c.updated_at.desc()
        ).limit(1)
        dialect = self.engines[0].dialect
        self.sql = str(self.statement.compile(dialect=dialect))
        self.positional = dialect.positional
        self.binary = dialect.name in ("mysql", "mariadb")
        self.size = size
        self.kept = self.engines[0].raw_connection()
        self.kept_connection = self.engines[2].connect()

    def _driver_value(self, name: str):
        value = name.encode("utf-8") if self.binary else name
        return (value,) if self.positional else {"key": value}

    def rungs(self, name: str) -> List[Callable[[], object]]:
        driver_value = self._driver_value(name)
        probe = OAuthToken(user_signature=UserSignature(name))
        return [
            lambda: _on_raw(self.kept, self.sql, driver_value),
            lambda: self._pooled(driver_value),
            lambda: self._kept_driver_sql(driver_value),
            lambda: self._driver_sql(driver_value),
            lambda: self._core(self.engines[4], self.statement, name),
            lambda: self._core(self.engines[5], self.newest, name),
            lambda: self.store.find_token(probe),
        ]

    def _pooled(self, value):
        raw = self.engines[1].raw_connection()
        try:
            return _on_raw(raw, self.sql, value)
        finally:
            raw.close()

    def _kept_driver_sql(self, value):
        return self.kept_connection.exec_driver_sql(self.sql, value).first()

    def _driver_sql(self, value):
        with self.engines[3].connect() as conn:
            return conn.exec_driver_sql(self.sql, value).first()

    def _core(self, engine, statement, name: str):
        with engine.connect() as conn:
            return conn.execute(statement, {"key": name}).first()

    def run(self, calls: int) -> Dict[str, float]:
        """Median µs of each rung, the rungs called in turn."""
        samples: List[List[int]] = [[] for _ in RUNGS]
        missing = 0
        for number in range(calls):
            name = data.TokenSpec(number * 7919 % self.size).user_name
            rungs = list(enumerate(self.rungs(name)))
            # Rotated, so that no rung always runs right after another.
            shift = number % len(rungs)
            for position, call in rungs[shift:] + rungs[:shift]:
                start = time.perf_counter_ns()
                found = call()
                samples[position].append(time.perf_counter_ns() - start)
                missing += found is None
        self.close()
        medians = {
            rung: statistics.median(taken) / 1e3
            for rung, taken in zip(RUNGS, samples)
        }
        medians["missing"] = missing
        return medians

    def close(self) -> None:
        self.kept_connection.close()
        self.kept.close()
        for engine in self.engines:
            engine.dispose()


def _on_raw(raw, sql: str, value):
    cursor = raw.cursor()
    try:
        cursor.execute(sql, value)
        return cursor.fetchone()
    finally:
        cursor.close()
