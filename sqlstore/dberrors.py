"""What a database error means for the store: retry it, or report it.

Drivers say the same thing in different ways: PostgreSQL through SQLSTATE
codes, MySQL and MariaDB through numbers, SQLite through its message. This
module reads them so that the queries in ``core`` need not.
"""

from __future__ import annotations

import random
import time
from typing import Iterable, Optional

from sqlalchemy.exc import DBAPIError, IntegrityError

# Errors that a second attempt can win: deadlocks and serialization
# failures (PostgreSQL 40P01/40001, MySQL 1213, MariaDB 1020), lock wait
# timeouts (MySQL 1205), a locked SQLite file, and connections the server
# dropped while they sat in the pool. MariaDB 1020, "Record has changed
# since last read", is what a save's locate-then-update meets when another
# save changed the row in between, under innodb_snapshot_isolation (the
# default from MariaDB 11.6 on); a new transaction reads the new row.
_RETRY_SQLSTATES = {"40001", "40P01"}
_RETRY_MYSQL_CODES = {1020, 1205, 1213}
_RETRY_SQLITE_MESSAGES = ("database is locked", "database is busy")
_MISSING_TABLE_SQLSTATES = {"42P01"}
_MISSING_TABLE_MYSQL_CODES = {1146}
_MISSING_COLUMN_SQLSTATES = {"42703"}
_MISSING_COLUMN_MYSQL_CODES = {1054}


def is_conflict(err: DBAPIError) -> bool:
    """A unique key said no: another writer got there first."""
    return isinstance(err, IntegrityError)


def is_transient(err: DBAPIError) -> bool:
    """An error that says nothing about the statement, only about timing."""
    if err.connection_invalidated:
        return True
    orig = err.orig
    if getattr(orig, "pgcode", None) in _RETRY_SQLSTATES:
        return True
    if mysql_code(orig) in _RETRY_MYSQL_CODES:
        return True
    message = str(orig).lower()
    return any(text in message for text in _RETRY_SQLITE_MESSAGES)


def is_missing_table(err: DBAPIError) -> bool:
    orig = err.orig
    if getattr(orig, "pgcode", None) in _MISSING_TABLE_SQLSTATES:
        return True
    if mysql_code(orig) in _MISSING_TABLE_MYSQL_CODES:
        return True
    return "no such table" in str(orig).lower()


def is_missing_column(err: DBAPIError) -> bool:
    """A column the model has is not in the table: its schema is older."""
    orig = err.orig
    if getattr(orig, "pgcode", None) in _MISSING_COLUMN_SQLSTATES:
        return True
    if mysql_code(orig) in _MISSING_COLUMN_MYSQL_CODES:
        return True
    # SQLite says it one way for reads and another for writes.
    message = str(orig).lower()
    return "no such column" in message or "has no column named" in message


def mysql_code(orig) -> Optional[int]:
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def kind(err: DBAPIError) -> str:
    """The driver's name for the error, e.g. ``OperationalError``."""
    return type(err.orig).__name__ if err.orig is not None else type(err).__name__


def describe(err: DBAPIError, secrets: Iterable[str] = ()) -> str:
    """The first line of the driver's message, with any secret blanked.

    Bound parameters are hidden by the engine, but a driver may still quote
    a value back (MySQL's "Duplicate entry '...'"), so the values the
    failing call carried are blanked as well.
    """
    text = str(err.orig) if err.orig is not None else str(err)
    lines = text.strip().splitlines()
    return _blank(lines[0] if lines else "no message", _worth_blanking(secrets))


def scrub(err: DBAPIError, secrets: Iterable[str]) -> None:
    """Blank the secrets out of the error, which stays our error's cause.

    PostgreSQL's constraint errors quote the whole failing row in their
    DETAIL line, which str(err) and every traceback print; and the bound
    values, which hide_parameters keeps out of the text, sit in params.
    """
    err.params = None
    secrets = _worth_blanking(secrets)
    for item in (err, err.orig):
        if item is None or not secrets:
            continue
        try:
            item.args = tuple(_blank(arg, secrets) for arg in item.args)
        except (AttributeError, TypeError):
            pass  # a driver error whose args cannot be set keeps them


def _worth_blanking(secrets: Iterable[str]) -> list:
    # A secret of a few characters would blank random parts of the message,
    # and where they were blanked would tell what it is.
    return [secret for secret in secrets if secret and len(secret) >= 8]


def _blank(value, secrets):
    if not isinstance(value, str):
        return value
    for secret in secrets:
        value = value.replace(secret, "***")
    return value


def back_off(attempt: int) -> None:
    """Sleep a little longer after each lost race, with jitter."""
    # The competing transaction is one row long: a few milliseconds.
    ceiling = min(0.25, 0.004 * 2**attempt)
    time.sleep(random.uniform(ceiling / 2, ceiling))
