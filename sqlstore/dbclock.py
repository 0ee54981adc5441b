"""The database server's clock, in epoch milliseconds, as a SQL expression.

Leases are timed by the database rather than by the workers: every worker
then reads one clock, whichever host it runs on and however far that
host's clock has drifted. The SDK's own ``expires_in`` stays on the
worker's clock, because that is the clock the SDK compares it with.
"""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class database_now_ms(FunctionElement):  # named as the SQL function it is
    """The server's current time as an integer of epoch milliseconds."""

    type = BigInteger()
    inherit_cache = True


@compiles(database_now_ms, "postgresql")
def _postgresql(element, compiler, **kw):
    # clock_timestamp(), not now(): now() stands still for a transaction.
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"


@compiles(database_now_ms, "mysql")
@compiles(database_now_ms, "mariadb")
def _mysql(element, compiler, **kw):
    # UTC_TIMESTAMP does not depend on the session's time zone, and a
    # difference of two DATETIMEs involves none, so no daylight-saving
    # hour can shift it (UNIX_TIMESTAMP(NOW()) is ambiguous in one).
    return (
        "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)"
    )


@compiles(database_now_ms, "sqlite")
def _sqlite(element, compiler, **kw):
    # julianday('now') is UTC with millisecond precision; 2440587.5 is the
    # Julian day of 1970-01-01 00:00 UTC.
    return "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


@compiles(database_now_ms)
def _other(element, compiler, **kw):
    raise NotImplementedError(
        "leases need the database's clock, known here for SQLite, "
        f"PostgreSQL and MySQL/MariaDB, not {compiler.dialect.name}: "
        "turn them off with EngineOptions(leases=False)"
    )
