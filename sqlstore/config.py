"""Where the tokens live: the connection URL, and the engine made from it.

The URL comes from the caller, else ``SQLSTORE_DATABASE_URL``, else an
SQLite file ``zohooauth.db`` in the working directory. Every engine made
here hides bound parameters, so a failing statement never prints a token
into an exception or a log line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from .errors import ConfigurationError, MissingDriverError

ENV_VAR = "SQLSTORE_DATABASE_URL"
DEFAULT_URL = "sqlite:///zohooauth.db"

# The extra that installs each backend's driver, for the error message.
_DRIVER_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


@dataclass(frozen=True)
class EngineOptions:
    """Tuning of the engine a store makes for itself.

    connect_timeout: seconds to wait for a server to accept a connection.
    busy_timeout: seconds an SQLite writer waits for another one's lock.
    pool_size: connections kept open to a server database.
    pool_recycle: seconds after which a pooled connection is replaced,
        before MySQL's own idle timeout closes it under us.
    """

    connect_timeout: float = 10.0
    busy_timeout: float = 30.0
    pool_size: int = 5
    pool_recycle: int = 1800


def database_url(url: Optional[str] = None) -> str:
    """The URL to use: the argument, else the environment, else the default."""
    if url:
        return url
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def url_is_configured(url: Optional[str] = None) -> bool:
    """Whether a URL was given rather than falling back to the default."""
    return bool(url or os.environ.get(ENV_VAR))


def mask_url(url: "str | URL") -> str:
    """The URL with its password replaced by ``***``, safe to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (
        None,
        "",
        ":memory:",
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
    parsed = _parse(url)
    kwargs = dict(
        hide_parameters=True,
        # Every use of these engines ends its own transaction, so the
        # pool's extra ROLLBACK on each return would be a wasted round trip.
        pool_reset_on_return=None,
    )
    if autocommit:
        kwargs["isolation_level"] = "AUTOCOMMIT"
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, options, kwargs)
    kwargs.update(
        pool_size=options.pool_size,
        pool_recycle=options.pool_recycle,
        connect_args=_server_connect_args(parsed, options),
    )
    try:
        engine = create_engine(parsed, **kwargs)
    except ImportError as err:
        raise _missing_driver(parsed) from err
    except NoSuchModuleError as err:
        raise ConfigurationError(
            f"SQLAlchemy knows no database driver {parsed.drivername!r}: "
            "expected postgresql+psycopg2, mysql+pymysql or sqlite"
        ) from err
    if autocommit and parsed.get_driver_name() == "pymysql":
        _skip_autocommit_rollback(engine)
    return engine


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


def _parse(url: "str | URL") -> URL:
    try:
        return make_url(url)
    except ArgumentError as err:
        raise ConfigurationError(
            "not a database URL: expected something like "
            "postgresql://user@host/db, mysql+pymysql://user@host/db or "
            "sqlite:///file.db"
        ) from err


def _missing_driver(url: URL) -> MissingDriverError:
    backend = url.get_backend_name()
    extra = _DRIVER_EXTRAS.get(backend)
    hint = f'pip install "sqlstore[{extra}]"' if extra else "install its driver"
    return MissingDriverError(
        f"the driver for {url.drivername} is not installed: {hint}"
    )


def _server_connect_args(url: URL, options: EngineOptions) -> dict:
    timeout = max(1, int(options.connect_timeout))
    driver = url.get_driver_name()
    if driver == "psycopg2":
        return {"connect_timeout": timeout}
    if driver == "pymysql":
        return {"connect_timeout": timeout, "charset": "utf8mb4"}
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
    engine = create_engine(
        url,
        connect_args={
            "timeout": options.busy_timeout,
            "check_same_thread": False,
        },
        **kwargs,
    )
    event.listen(engine, "connect", _use_wal)
    return engine


def _use_wal(dbapi_connection, _record):
    # WAL lets readers go on while one process writes, which is what
    # several workers sharing one file need.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()
