"""Where the test databases are, and whether a test may skip one.

Server URLs come from ``SQLSTORE_TEST_POSTGRES_URL`` and
``SQLSTORE_TEST_MYSQL_URL`` (defaults: the servers docker-compose.yml
starts, on 127.0.0.1). A server that does not answer is skipped with the
reason, unless ``SQLSTORE_REQUIRE_BACKENDS=1`` (CI sets it): then the test
fails, so no backend can silently drop out of a run.
"""

from __future__ import annotations

import functools
import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from sqlstore.config import mask_url

POSTGRES_URL = os.environ.get(
    "SQLSTORE_TEST_POSTGRES_URL",
    "postgresql+psycopg2://postgres@127.0.0.1:5432/sqlstore_test",
)
MYSQL_URL = os.environ.get(
    "SQLSTORE_TEST_MYSQL_URL",
    "mysql+pymysql://root@127.0.0.1:3306/sqlstore_test",
)
SERVER_URLS = {"postgresql": POSTGRES_URL, "mariadb": MYSQL_URL}
BACKENDS = ["sqlite-file", "sqlite-memory", "postgresql", "mariadb"]


def backends_required() -> bool:
    return os.environ.get("SQLSTORE_REQUIRE_BACKENDS") == "1"


@functools.lru_cache(maxsize=None)
def _server_problem(url: str):
    """None when the server answers (creating the database if need be)."""
    try:
        _ensure_database(url)
        engine = create_engine(url, connect_args=_quick_connect(url))
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as err:  # any failure means "not usable here"
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"


def _quick_connect(url: str) -> dict:
    return {"connect_timeout": 5}


def _ensure_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        server = parsed.set(database="postgres")
        exists = "SELECT 1 FROM pg_database WHERE datname = :name"
        create = f'CREATE DATABASE "{parsed.database}"'
    else:
        server = parsed._replace(database=None)
        exists = "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"
        create = (
            f"CREATE DATABASE `{parsed.database}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )
    engine = create_engine(
        server, isolation_level="AUTOCOMMIT", connect_args=_quick_connect(url)
    )
    try:
        with engine.connect() as conn:
            if conn.execute(text(exists), {"name": parsed.database}).first() is None:
                conn.execute(text(create))
    finally:
        engine.dispose()


def server_url_or_skip(backend: str) -> str:
    url = SERVER_URLS[backend]
    problem = _server_problem(url)
    if problem is not None:
        message = f"{backend} not reachable at {mask_url(url)}: {problem}"
        if backends_required():
            pytest.fail(message + " (SQLSTORE_REQUIRE_BACKENDS=1)", pytrace=False)
        pytest.skip(message)
    return url
