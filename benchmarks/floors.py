"""The raw-driver floor: the least any store could do per call.

One connection kept open in autocommit mode. A find is one indexed SELECT
of the whole row; a save is one single-row upsert on the (user, client,
data centre) key, which commits, and so is as durable as the server's or
SQLite's settings make a commit. The table is a copy of ours, with the same
keys and indexes, and token lookups go through the same SHA-256 digests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import uuid
from typing import List, Optional

from sqlalchemy import MetaData

from . import data, databases, settings
from .subjects import Prepared, Subject

COLUMNS = [column.name for column in databases.floor_table(MetaData()).columns]
_USER = COLUMNS.index("user_name")
_ACCESS = COLUMNS.index("access_token")
_ID = COLUMNS.index("id")

# The columns a refresh or a new grant changes; the key columns stay.
_UPDATED = (
    "client_secret",
    "redirect_url",
    "access_token",
    "refresh_token",
    "access_token_digest",
    "refresh_token_digest",
    "expiry_time",
    "updated_at",
    # As our saves do, a refresh ends any lease on the row.
    "lease_owner",
    "lease_until",
)
_INSERTED = [name for name in COLUMNS if name != "grant_token_digest"]
_INSERTED.remove("grant_token")

_FIND_COLUMN = {
    "find_user": "user_name",
    "find_access": "access_token_digest",
    "find_refresh": "refresh_token_digest",
    "find_id": "id",
}


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class Floor(Subject):
    """A raw DB-API connection; subclasses give the SQL dialect's details."""

    store = "raw floor"
    is_floor = True
    placeholder = "%s"
    # Key columns that sqlstore keeps as bytes on MySQL (VARBINARY).
    binary_keys = False

    def __init__(self, connection, backend: str, key: str, driver: str):
        self.connection = connection
        self.backend = backend
        self.key = self.cap_key = key
        self.store = f"raw {driver} (floor)"
        self.find_sql = {
            op: self._select(column) for op, column in _FIND_COLUMN.items()
        }
        self.upsert_sql = self._upsert()

    # -- SQL ---------------------------------------------------------------

    def _select(self, column: str) -> str:
        return (
            f"SELECT {', '.join(COLUMNS)} FROM {settings.FLOOR_TABLE} "
            f"WHERE {column} = {self.placeholder} LIMIT 1"
        )

    def _upsert(self) -> str:
        marks = ", ".join([self.placeholder] * len(_INSERTED))
        return (
            f"INSERT INTO {settings.FLOOR_TABLE} ({', '.join(_INSERTED)}) "
            f"VALUES ({marks}) {self._on_conflict()}"
        )

    def _on_conflict(self) -> str:
        sets = ", ".join(f"{name} = excluded.{name}" for name in _UPDATED)
        return f"ON CONFLICT (user_name, client_id, api_domain) DO UPDATE SET {sets}"

    def _key(self, value: str):
        return value.encode("utf-8") if self.binary_keys else value

    def _now(self):
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    # -- calls -------------------------------------------------------------

    def fill(self, specs: List[data.TokenSpec]) -> None:
        raise NotImplementedError

    def prepare(self, operation: str, spec: data.TokenSpec) -> Prepared:
        if operation in _FIND_COLUMN:
            return self._prepare_find(operation, spec)
        new_id = spec.uuid_id if operation == "save_update" else None
        call = lambda: self.upsert(spec, new_id)  # noqa: E731
        return call, lambda _: self._read_back(spec)

    def _prepare_find(self, operation: str, spec) -> Prepared:
        sql = self.find_sql[operation]

        def call():
            # The digest is computed per call, as a store must.
            if operation == "find_access":
                value = _sha256(spec.access_token)
            elif operation == "find_refresh":
                value = _sha256(spec.refresh_token)
            elif operation == "find_user":
                value = self._key(spec.user_name)
            else:
                value = self._key(spec.uuid_id)
            return self.fetch_one(sql, value)

        return call, lambda row: self._mismatch(row, spec)

    def fetch_one(self, sql: str, value):
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, (value,))
            return cursor.fetchone()
        finally:
            cursor.close()

    def upsert(self, spec: data.TokenSpec, row_id: Optional[str]) -> None:
        now = self._now()
        values = {
            "id": self._key(row_id or str(uuid.uuid4())),
            "user_name": self._key(spec.user_name),
            "client_id": self._key(data.CLIENT_ID),
            "api_domain": self._key(data.API_DOMAIN),
            "client_secret": data.CLIENT_SECRET,
            "redirect_url": data.REDIRECT_URL,
            "access_token": spec.access_token,
            "refresh_token": spec.refresh_token,
            "access_token_digest": _sha256(spec.access_token),
            "refresh_token_digest": _sha256(spec.refresh_token),
            "expiry_time": spec.expiry,
            "created_at": now,
            "updated_at": now,
            "lease_owner": None,
            "lease_until": None,
        }
        cursor = self.connection.cursor()
        try:
            cursor.execute(self.upsert_sql, [values[name] for name in _INSERTED])
        finally:
            cursor.close()

    def _read_back(self, spec) -> Optional[str]:
        row = self.fetch_one(self.find_sql["find_user"], self._key(spec.user_name))
        return self._mismatch(row, spec, check_id=False)

    def _mismatch(self, row, spec, check_id=True) -> Optional[str]:
        if row is None:
            return "found nothing"
        if _text(row[_USER]) != spec.user_name:
            return "another user's row"
        if row[_ACCESS] != spec.access_token:
            return "a stale access token"
        if check_id and _text(row[_ID]) != spec.uuid_id:
            return "the wrong id"
        return None

    def close(self) -> None:
        self.connection.close()


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return value


class SqliteFloor(Floor):
    """sqlite3 in autocommit mode on a WAL file with synchronous=FULL."""

    placeholder = "?"

    def __init__(self, path: str):
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        # Every commit reaches the disk: the floor of a durable save.
        connection.execute("PRAGMA synchronous=FULL")
        super().__init__(connection, "SQLite", "floor-sqlite", "sqlite3")
        self.path = path

    def _now(self):
        # SQLAlchemy keeps SQLite timestamps as text in this form.
        return super()._now().strftime("%Y-%m-%d %H:%M:%S.%f")

    def fill(self, specs):
        _fill_with_sqlalchemy(f"sqlite:///{self.path}", specs)


class PostgresFloor(Floor):
    """psycopg2 in autocommit mode."""

    def __init__(self):
        connection = databases.pg_connect()
        connection.autocommit = True
        super().__init__(connection, "PostgreSQL", "floor-postgresql", "psycopg2")

    def fill(self, specs):
        _fill_with_sqlalchemy(settings.PG_URL, specs)


class MysqlFloor(Floor):
    """PyMySQL in autocommit mode; keys sent as bytes, like sqlstore's."""

    binary_keys = True

    def __init__(self):
        connection = databases.mysql_connect(autocommit=True)
        super().__init__(connection, "MariaDB", "floor-mariadb", "PyMySQL")

    def _on_conflict(self) -> str:
        sets = ", ".join(f"{name} = VALUES({name})" for name in _UPDATED)
        return f"ON DUPLICATE KEY UPDATE {sets}"

    def fill(self, specs):
        _fill_with_sqlalchemy(settings.MYSQL_URL, specs)


def _fill_with_sqlalchemy(url: str, specs) -> None:
    from sqlstore.config import create_store_engine

    engine = create_store_engine(url)
    try:
        table = databases.floor_table(MetaData())
        databases.fill_table(engine, table, specs)
    finally:
        engine.dispose()
