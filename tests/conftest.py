"""Fixtures over every backend: SQLite file, SQLite memory, PostgreSQL, MariaDB.

Where the servers are, and when one may be skipped: ``backends.py``.
"""

from __future__ import annotations

import pytest
from backends import (  # noqa: F401 (re-exported for the suites)
    BACKENDS,
    MYSQL_URL,
    POSTGRES_URL,
    SERVER_URLS,
    backends_required,
    server_url_or_skip,
)
from sdkrequire import check_installed
from sqlalchemy import inspect, text

from sqlstore import migrate
from sqlstore.config import create_store_engine


def _migrated(url: str) -> None:
    """Bring the database to head: other suites may have downgraded it,
    and a run of an older checkout may have left it at an older head."""
    engine = create_store_engine(url)
    try:
        if migrate.current(engine) != migrate.head_revision():
            migrate.upgrade(engine)
    finally:
        engine.dispose()


def pytest_sessionstart(session):
    check_installed()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend, tmp_path) -> str:
    """A URL whose oauthtoken table exists and is empty."""
    if backend == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'tokens.db'}"
        _migrated(url)
        return url
    if backend == "sqlite-memory":
        return "sqlite://"
    url = server_url_or_skip(backend)
    _migrated(url)
    engine = create_store_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM oauthtoken"))
    engine.dispose()
    return url


@pytest.fixture
def store(database_url):
    from sqlstore import SqlAlchemyStore

    made = SqlAlchemyStore(database_url)
    yield made
    made.close()
