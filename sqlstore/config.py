"""Where the tokens live: the connection URL, and the engine made from it.

The URL comes from the caller, else ``SQLSTORE_DATABASE_URL``, else an
SQLite file ``zohooauth.db`` in the working directory. Every engine made
here hides bound parameters, so a failing statement never prints a token
into an exception or a log line.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.pool import StaticPool

from . import deadline
from .errors import ConfigurationError
from .urls import (  # noqa: F401 (mask_url is imported from here too)
    mask_url,
    missing_driver,
    parse_url,
    unknown_driver,
)

ENV_VAR = "SQLSTORE_DATABASE_URL"
DEFAULT_URL = "sqlite:///zohooauth.db"

# Our engines log as sqlalchemy.engine.Engine.sqlstore. At DEBUG,
# SQLAlchemy logs every result row there, tokens and secrets included:
# those records are dropped, while the statements (INFO, their parameters
# hidden) still reach anyone who turns engine logging on.
ENGINE_LOGGING_NAME = "sqlstore"
logging.getLogger(f"sqlalchemy.engine.Engine.{ENGINE_LOGGING_NAME}").addFilter(
    lambda record: record.levelno > logging.DEBUG
)


log = logging.getLogger(__name__)

_SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass(frozen=True)
class EngineOptions:
    """Tuning of the engine a store makes for itself.

    connect_timeout: seconds to wait for a server to accept a connection.
    statement_timeout: seconds a statement may wait for the server's
        answer. PostgreSQL: the server cancels a slower statement, and TCP
        keepalives and the TCP user timeout drop a connection whose peer
        stopped answering within about as long. MySQL: the driver's read
        and write timeouts, which also bound the handshake of a new
        connection to a server that accepts and then says nothing.
    busy_timeout: seconds an SQLite writer waits for another one's lock.
    sqlite_synchronous: when an SQLite commit returns. "FULL" (the
        default): once it is on disk, so a returned save survives a power
        cut. "NORMAL": sooner, and still safe if the application crashes,
        but the machine's crash may undo the last saves.
    pool_size: connections kept open to a server database.
    pool_recycle: seconds after which a pooled connection is replaced,
        before MySQL's own idle timeout closes it under us.
    leases: workers agree through the database on who refreshes an
        expiring access token, and who exchanges a new grant token; the
        others wait for that one's result (see ``sqlstore.lease``). False
        turns this off: every worker's SDK then calls Zoho on its own.
    lease_seconds: how long a lease lasts when its holder never saves:
        a holder that died delays the others by at most this long.
    lease_wait: the longest a worker waits for another one's refresh or
        exchange before it goes to Zoho itself. Keep it above
        lease_seconds, so that a dead holder's lease is taken over rather
        than every waiter giving up at once.
    """

    connect_timeout: float = 10.0
    statement_timeout: float = 10.0
    busy_timeout: float = 30.0
    sqlite_synchronous: str = "FULL"
    pool_size: int = 5
    pool_recycle: int = 1800
    leases: bool = True
    lease_seconds: float = 10.0
    lease_wait: float = 15.0

    def __post_init__(self):
        # Checked here, where the mistake is made, rather than as an odd
        # driver error at the first connection.
        for name in ("connect_timeout", "statement_timeout", "busy_timeout"):
            _check_number(name, getattr(self, name), minimum=0, inclusive=False)
        _check_number("lease_seconds", self.lease_seconds, minimum=0, inclusive=False)
        _check_number("lease_wait", self.lease_wait, minimum=0, inclusive=True)
        if self.leases and self.lease_wait < self.lease_seconds:
            log.warning(
                "EngineOptions.lease_wait (%g s) is shorter than lease_seconds "
                "(%g s): when a lease holder dies, every waiter gives up and "
                "refreshes on its own before the lease can be taken over",
                self.lease_wait,
                self.lease_seconds,
            )
        _check_whole("pool_size", self.pool_size, minimum=1)
        _check_whole("pool_recycle", self.pool_recycle, minimum=-1)
        if not isinstance(self.leases, bool):
            raise ConfigurationError(
                f"EngineOptions.leases must be True or False, not {self.leases!r}"
            )
        if str(self.sqlite_synchronous).upper() not in _SQLITE_SYNCHRONOUS:
            raise ConfigurationError(
                "EngineOptions.sqlite_synchronous must be one of "
                f"{', '.join(_SQLITE_SYNCHRONOUS)}, "
                f"not {self.sqlite_synchronous!r}"
            )


# The longest any of the time options may be: drivers and kernels refuse
# longer ones (Linux's TCP keepalive idle time stops at 32,767 s, which is
# derived from statement_timeout), and none is meant to be over a day.
_MAX_SECONDS = 86_400


def _check_number(name: str, value, minimum: float, inclusive: bool) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and value <= _MAX_SECONDS:
        if value > minimum or (inclusive and value == minimum):
            return
    bound = f"{minimum:g} or more" if inclusive else f"more than {minimum:g}"
    raise ConfigurationError(
        f"EngineOptions.{name} must be a number of seconds, {bound} and at "
        f"most {_MAX_SECONDS:,}, not {value!r}"
    )


def _check_whole(name: str, value, minimum: int) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return
    raise ConfigurationError(
        f"EngineOptions.{name} must be a whole number, {minimum} or more, "
        f"not {value!r}"
    )


def database_url(url: Optional[str] = None) -> str:
    """The URL to use: the argument, else the environment, else the default.

    An empty one is refused rather than read as "not given": a deployment
    whose variable came out empty would otherwise keep its tokens in a
    file of the working directory.
    """
    if url is not None:
        return _not_empty(url, "the database URL")
    from_environment = os.environ.get(ENV_VAR)
    if from_environment is not None:
        return _not_empty(from_environment, ENV_VAR)
    return DEFAULT_URL


def _not_empty(url, source: str):
    if isinstance(url, str) and not url.strip():
        raise ConfigurationError(
            f"{source} is empty: give a SQLAlchemy URL such as "
            f"sqlite:///zohooauth.db, or leave it unset for that default"
        )
    return url


def url_is_configured(url: Optional[str] = None) -> bool:
    """Whether a URL was given rather than falling back to the default."""
    return url is not None or os.environ.get(ENV_VAR) is not None


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (
        None,
        "",
        ":memory:",
    )


def check_engine(engine: Engine) -> None:
    """Refuse an engine the store cannot work with, saying what to do."""
    if is_memory_sqlite(engine.url) and not isinstance(engine.pool, StaticPool):
        # SQLAlchemy's default pool gives each thread its own connection,
        # and so its own empty in-memory database.
        raise ConfigurationError(
            "an in-memory SQLite engine must use StaticPool so that every "
            "thread sees one database: pass url='sqlite://' instead, or "
            "create_engine('sqlite://', poolclass=StaticPool, "
            "connect_args={'check_same_thread': False})"
        )


def create_store_engines(
    url: "str | URL", options: EngineOptions = EngineOptions()
) -> "tuple[Engine, Optional[Engine]]":
    """The store's two engines: for transactions, and for lone statements.

    The second is None for in-memory SQLite, whose one connection is the
    whole database.
    """
    engine = create_store_engine(url, options)
    if is_memory_sqlite(engine.url):
        return engine, None
    return engine, create_store_engine(url, options, autocommit=True)


def create_store_engine(
    url: "str | URL",
    options: EngineOptions = EngineOptions(),
    *,
    autocommit: bool = False,
) -> Engine:
    """An engine set up for short, frequent token lookups on this backend.

    With ``autocommit`` each statement commits itself: a lookup is then one
    round trip, with no BEGIN before it and no ROLLBACK after.
    """
    parsed = parse_url(url)
    kwargs = dict(
        hide_parameters=True,
        logging_name=ENGINE_LOGGING_NAME,
        # Every use of these engines ends its own transaction, so the
        # pool's extra ROLLBACK on each return would be a wasted round trip.
        pool_reset_on_return=None,
    )
    if autocommit:
        kwargs["isolation_level"] = "AUTOCOMMIT"
    elif parsed.get_backend_name() != "sqlite":
        # A save's locate-then-write needs no snapshot: the unique keys
        # settle races. Under one (a stricter server default, or MariaDB
        # 11.6's innodb_snapshot_isolation) its UPDATE fails whenever
        # another save changed the row after the locate.
        kwargs["isolation_level"] = "READ COMMITTED"
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, options, kwargs)
    try:
        kwargs.update(
            pool_size=options.pool_size,
            pool_recycle=options.pool_recycle,
            connect_args=_unless_in_url(
                parsed, _server_connect_args(parsed, options)
            ),
        )
        engine = create_engine(parsed, **kwargs)
    except ImportError as err:
        raise missing_driver(parsed, getattr(err, "name", None)) from err
    except NoSuchModuleError as err:
        raise unknown_driver(parsed) from err
    if autocommit and parsed.get_driver_name() == "pymysql":
        _skip_autocommit_rollback(engine)
    return engine


def _unless_in_url(url: URL, connect_args: dict) -> dict:
    # A setting written into the URL (?connect_timeout=3) is the user's
    # explicit choice, and wins over the defaults of EngineOptions.
    return {k: v for k, v in connect_args.items() if k not in url.query}


def _skip_autocommit_rollback(engine: Engine) -> None:
    # SQLAlchemy ends every connection's use with the driver's rollback().
    # PyMySQL sends a ROLLBACK to the server for it even in autocommit
    # mode, where there is nothing to roll back: a second round trip on
    # every lookup. This engine's connections are always in autocommit.
    dialect = engine.dialect
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection):
        if not dbapi_connection.get_autocommit():
            rollback(dbapi_connection)

    dialect.do_rollback = do_rollback


def _server_connect_args(url: URL, options: EngineOptions) -> dict:
    timeout = max(1, int(options.connect_timeout))
    wait = max(0.001, options.statement_timeout)
    driver = url.get_driver_name()
    if driver == "psycopg2":
        # statement_timeout runs in the server: it ends a slow statement,
        # not a silent network. Keepalives (about 3 probe periods) and the
        # TCP user timeout drop such a connection, idle or waiting.
        probe = max(1, int(wait / 3))
        args = {
            "connect_timeout": timeout,
            "options": f"-c statement_timeout={int(wait * 1000)}",
            "keepalives": 1,
            "keepalives_idle": probe,
            "keepalives_interval": probe,
            "keepalives_count": 2,
        }
        try:  # libpq knows the TCP user timeout from version 12 on
            from psycopg2.extensions import libpq_version

            if libpq_version() >= 120000:
                args["tcp_user_timeout"] = int(wait * 1000)
            # libpq has no read timeout: a server that accepts and then
            # says nothing would hold the call for ever.
            args.update(deadline.psycopg2_factories(wait))
        except ImportError:
            pass  # create_engine reports the missing driver
        return args
    if driver == "pymysql":
        # The read timeout only stops the client waiting: a statement
        # queued behind a lock would still run later on the server. A
        # shorter lock wait makes the server give up first, so a call that
        # fails has not happened.
        lock_wait = max(1, int(wait / 2))
        return {
            "connect_timeout": timeout,
            "read_timeout": wait,
            "write_timeout": wait,
            "charset": "utf8mb4",
            "init_command": f"SET SESSION innodb_lock_wait_timeout = {lock_wait}",
        }
    return {}


def _sqlite_engine(url: URL, options: EngineOptions, kwargs: dict) -> Engine:
    if is_memory_sqlite(url):
        # One connection shared by every thread: each new connection to
        # sqlite:// would be a new, empty database.
        return create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            **kwargs,
        )
    synchronous = _sqlite_synchronous(options)
    engine = create_engine(
        url,
        connect_args={
            # SQLite's busy timeout: a writer waits this long for the lock.
            "timeout": options.busy_timeout,
            "check_same_thread": False,
        },
        **kwargs,
    )

    def set_up(dbapi_connection, _record):
        _use_wal(dbapi_connection, options.busy_timeout)
        _pragma(dbapi_connection, f"synchronous={synchronous}")

    event.listen(engine, "connect", set_up)
    if kwargs.get("isolation_level") != "AUTOCOMMIT":
        event.listen(engine, "begin", _begin_immediate)
    return engine


# A pragma takes no bound parameter: the option is checked against these
# before it is written into one.


def _sqlite_synchronous(options: EngineOptions) -> str:
    return str(options.sqlite_synchronous).upper()  # checked by EngineOptions


def _use_wal(dbapi_connection, busy_timeout: float) -> None:
    # WAL lets readers go on while one process writes, which is what
    # several workers sharing one file need. Turning a new file to WAL
    # needs the file to itself, and SQLite says "database is locked" at
    # once, without waiting out its busy timeout, when another process
    # opens the file at that moment: that wait is done here instead.
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            _pragma(dbapi_connection, "journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _pragma(dbapi_connection, setting: str) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA {setting}")
    finally:
        cursor.close()


def _begin_immediate(conn) -> None:
    # Python's sqlite3 sends no BEGIN until the first INSERT or UPDATE, so
    # a save's locate-then-write would read outside its transaction. A
    # plain BEGIN would not help: a transaction that has read and then
    # writes gets "database is locked" at once when another process wrote
    # in between, with no busy timeout. BEGIN IMMEDIATE takes the write
    # lock first, waiting out the busy timeout, so that the locate and the
    # write are one unit that nothing can come between.
    driver = conn.connection.driver_connection
    if driver.isolation_level is None or driver.in_transaction:
        return  # autocommit asked for, or a transaction already open
    conn.exec_driver_sql("BEGIN IMMEDIATE")
