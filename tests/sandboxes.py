"""Empty databases of a test's own, and the SDK's stores filling them.

A test that renames or creates tables (an adoption, an SDK table to import
from) gets a database nobody else uses: an SQLite file in its temporary
directory, a new schema in the suite's PostgreSQL database, or a new
database on the suite's MariaDB server, dropped afterwards.

The SDK's own stores write the rows wherever they can: ``FileStore`` the
CSV files, ``DBStore`` the table on MariaDB. DBStore talks to MySQL only,
so on PostgreSQL and SQLite the same rows go into a table made with the
SDK's documented DDL through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from typing import Iterator, List, Optional

from backends import server_url_or_skip
from sqlalchemy import (
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.db_store import DBStore
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore.config import create_store_engine

# Backends a command run can reach: an in-memory database is gone when
# the engine that made it goes.
PERSISTENT = ["sqlite-file", "postgresql", "mariadb"]
ALL = ["sqlite-file", "sqlite-memory", "postgresql", "mariadb"]


@dataclasses.dataclass
class Database:
    """An empty database: its URL, and an engine on it for the test."""

    backend: str
    url: str
    engine: Engine
    name: Optional[str] = None  # the database's own name, on MariaDB


@contextlib.contextmanager
def own_database(backend: str, tmp_path) -> Iterator[Database]:
    if backend == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'own.db'}"
        with _disposed(create_store_engine(url)) as engine:
            yield Database(backend, url, engine)
        return
    if backend == "sqlite-memory":
        with _disposed(create_store_engine("sqlite://")) as engine:
            yield Database(backend, "sqlite://", engine)
        return
    base = make_url(server_url_or_skip(backend))
    name = f"{base.database}_{uuid.uuid4().hex[:8]}"
    if backend == "postgresql":
        admin_url = base
        create, drop = f'CREATE SCHEMA "{name}"', f'DROP SCHEMA "{name}" CASCADE'
        own = base.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        admin_url = base.set(database=None)
        create = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        drop = f"DROP DATABASE `{name}`"
        own = base.set(database=name)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(create))
    url = own.render_as_string(hide_password=False)
    try:
        with _disposed(create_store_engine(url)) as engine:
            yield Database(backend, url, engine, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(drop))
        admin.dispose()


@contextlib.contextmanager
def _disposed(engine: Engine) -> Iterator[Engine]:
    try:
        yield engine
    finally:
        engine.dispose()


# -- tokens as the SDK holds them ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Saved:
    """One call of the SDK store's save_token."""

    user: str
    access: str
    refresh: str
    expiry: int
    client_id: str = "1000.IMPORTCLIENT"
    client_secret: str = "import-client-secret-0001"
    api_domain: str = "https://www.zohoapis.com"

    def token(self) -> OAuthToken:
        # A new object each time, without an id, as each new process has.
        token = OAuthToken(
            client_id=self.client_id,
            client_secret=self.client_secret,
            refresh_token=self.refresh,
        )
        token.set_access_token(self.access)
        token.set_user_signature(UserSignature(self.user))
        token.set_expires_in(str(self.expiry))
        token.set_api_domain(self.api_domain)
        return token


def fill_file_store(path, saves: List[Saved]) -> None:
    store = FileStore(str(path))
    for save in saves:
        store.save_token(save.token())


# -- the SDK's MySQL table ----------------------------------------------------


_SDK_TEXT_COLUMNS = (
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
)


def sdk_table(name: str = "oauthtoken") -> Table:
    """The table of the SDK's documentation, as SQLAlchemy writes it."""
    return Table(
        name,
        MetaData(),
        Column("id", String(10), nullable=False),
        *(Column(column, String(255)) for column in _SDK_TEXT_COLUMNS),
        Column("expiry_time", String(20)),
        Column("redirect_url", String(255)),
        Column("api_domain", String(255)),
        PrimaryKeyConstraint("id"),
    )


def create_sdk_table(engine: Engine, name: str = "oauthtoken") -> Table:
    table = sdk_table(name)
    table.create(engine)
    return table


def fill_db_store(database: Database, saves: List[Saved], name="oauthtoken") -> None:
    """The saves through the SDK's own DBStore (MariaDB only)."""
    url = make_url(database.url)
    store = DBStore(
        host=url.host,
        database_name=url.database,
        user_name=url.username or "root",
        password=url.password or "",
        port_number=str(url.port or 3306),
        table_name=name,
    )
    for save in saves:
        store.save_token(save.token())


def insert_sdk_rows(engine: Engine, rows: List[dict], name="oauthtoken") -> None:
    """Rows written straight into an SDK-shaped table, as DBStore leaves them."""
    with engine.begin() as conn:
        conn.execute(insert(sdk_table(name)), rows)


def sdk_rows(engine: Engine, name: str) -> List[dict]:
    table = sdk_table(name)
    with engine.connect() as conn:
        found = conn.execute(select(table).order_by(table.c.id))
        return [row._asdict() for row in found]


# -- the tokens the tests import -------------------------------------------------

# Far in the future, so that nothing here counts as expired.
LATER = 4_102_444_800_000
HOUR = 3_600_000

# The SDK's save_token calls, in order, as processes of an application
# would make them: the second is a process saving the same token again,
# the third a refresh; "Eve" and "eve" are one user to Zoho.
SAVES = [
    Saved("ada@example.com", "1000.ada-access-1", "1000.ada-refresh", LATER),
    Saved("ada@example.com", "1000.ada-access-1", "1000.ada-refresh", LATER),
    Saved("ada@example.com", "1000.ada-access-3", "1000.ada-refresh", LATER + HOUR),
    Saved("bob@example.com", "1000.bob-access-1", "1000.bob-refresh", LATER + 1),
    Saved("Eve@Example.com", "1000.eve-access-1", "1000.eve-refresh-1", LATER + 2),
    Saved("eve@example.com", "1000.eve-access-2", "1000.eve-refresh-2", LATER + 2),
]
# What DBStore leaves of them: its update "where user_name = ? limit 1"
# changes no row when the values are the same (MySQL counts changed rows),
# so it inserts a second one; the refresh then updates only the first.
DB_STORE_ROWS = [
    ("1", SAVES[2]),
    ("2", SAVES[1]),
    ("3", SAVES[3]),
    ("4", SAVES[4]),
    ("5", SAVES[5]),
]
# What the store must hold after importing either: the latest expiry wins,
# and between the two eves (same expiry) the later row.
EXPECTED = {
    "ada@example.com": "1000.ada-access-3",
    "bob@example.com": "1000.bob-access-1",
    "eve@example.com": "1000.eve-access-2",
}


def fill_sdk_table(database: Database, name: str = "oauthtoken") -> str:
    """The SDK's table, filled with SAVES as DBStore leaves them."""
    create_sdk_table(database.engine, name)
    if database.backend == "mariadb":
        fill_db_store(database, SAVES, name)
    else:
        rows = [sdk_row(token_id, save) for token_id, save in DB_STORE_ROWS]
        insert_sdk_rows(database.engine, rows, name)
    found = sdk_rows(database.engine, name)
    # On MariaDB this checks that DB_STORE_ROWS is what DBStore leaves.
    assert [(r["id"], r["access_token"]) for r in found] == [
        (token_id, save.access) for token_id, save in DB_STORE_ROWS
    ]
    return name


def sdk_row(token_id: str, save: Saved) -> dict:
    """A row of the SDK's table as DBStore writes one."""
    return dict(
        id=token_id,
        user_name=save.user,
        client_id=save.client_id,
        client_secret=save.client_secret,
        refresh_token=save.refresh,
        access_token=save.access,
        grant_token=None,
        expiry_time=str(save.expiry),
        redirect_url=None,
        api_domain=save.api_domain,
    )
