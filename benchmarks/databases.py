"""The benchmark's own databases and tables, and filling them fast.

Filling goes around the stores (bulk inserts, or writing the CSV file
directly) because saving 100,000 tokens one call at a time would take
longer than the whole run may. The rows are those the stores themselves
would write; the timed calls then go through the stores as the SDK would.
"""

from __future__ import annotations

import csv
from typing import Iterable, List

import psycopg2
import pymysql
from sqlalchemy import MetaData, Table, insert, text
from sqlalchemy.engine import Engine

from sqlstore import migrate
from sqlstore.config import create_store_engine
from sqlstore.model import CLAIM_TABLE_NAME, oauthtoken
from sqlstore.record import SECRET_FIELDS, digest

from . import data, settings

CHUNK = 5_000

# The layout DBStore reads by position (``select *``): the SDK's
# documented table, keyed by id alone, with no index on any token column.
SDK_TABLE_DDL = f"""
CREATE TABLE {settings.SDK_TABLE} (
    id VARCHAR(10) NOT NULL,
    user_name VARCHAR(255) NOT NULL,
    client_id VARCHAR(255),
    client_secret VARCHAR(255),
    refresh_token VARCHAR(255),
    access_token VARCHAR(255),
    grant_token VARCHAR(255),
    expiry_time VARCHAR(20),
    redirect_url VARCHAR(255),
    api_domain VARCHAR(255),
    PRIMARY KEY (id)
)"""


# -- raw connections ---------------------------------------------------------


def pg_connect(database: str = settings.DATABASE):
    return psycopg2.connect(
        host=settings.HOST,
        port=settings.PG_PORT,
        user=settings.PG_USER,
        dbname=database,
        connect_timeout=10,
    )


def mysql_connect(database=settings.DATABASE, autocommit=True):
    return pymysql.connect(
        host=settings.HOST,
        port=settings.MYSQL_PORT,
        user=settings.MYSQL_USER,
        database=database,
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=10,
    )


# -- databases and tables ----------------------------------------------------


def ensure_databases() -> None:
    """Create the benchmark's databases on both servers if they are missing."""
    names = (settings.DATABASE, settings.ENCRYPTED_DATABASE)
    conn = pg_connect("postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    conn = mysql_connect(database=None)
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
    finally:
        conn.close()


def floor_table(metadata: MetaData) -> Table:
    """A copy of our table under the floor's name, keys and indexes alike.

    Constraint and index names are schema-wide on PostgreSQL, so they are
    renamed along with the table.
    """
    table = oauthtoken.to_metadata(metadata, name=settings.FLOOR_TABLE)
    for item in list(table.constraints) + list(table.indexes):
        if item.name:
            item.name = str(item.name).replace(
                oauthtoken.name, settings.FLOOR_TABLE, 1
            )
    return table


def reset_our_table(url: str) -> None:
    """Our table alone, anew: where the store with encryption keeps tokens."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            tables = (CLAIM_TABLE_NAME, settings.OURS_TABLE, migrate.VERSION_TABLE)
            for name in tables:
                conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def reset_server_tables(url: str) -> None:
    """Drop the benchmark's tables in sqlstore_bench and create them anew."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            for name in (
                CLAIM_TABLE_NAME,
                settings.OURS_TABLE,
                migrate.VERSION_TABLE,
                settings.FLOOR_TABLE,
                settings.SDK_TABLE,
            ):
                conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        migrate.upgrade(engine)
        metadata = MetaData()
        floor_table(metadata).create(engine)
        if engine.dialect.name in ("mysql", "mariadb"):
            with engine.begin() as conn:
                conn.execute(text(SDK_TABLE_DDL))
    finally:
        engine.dispose()


def create_sqlite_files(ours_url: str, floor_url: str) -> None:
    """Our schema in one fresh file, the floor's table in another."""
    migrate.upgrade(ours_url)
    engine = create_store_engine(floor_url)
    try:
        floor_table(MetaData()).create(engine)
    finally:
        engine.dispose()


# -- filling -----------------------------------------------------------------


def store_row(spec: data.TokenSpec) -> dict:
    """The row sqlstore keeps for a spec (the floor's table is the same)."""
    return {
        "id": spec.uuid_id,
        "user_name": spec.user_name,
        "client_id": data.CLIENT_ID,
        "api_domain": data.API_DOMAIN,
        "client_secret": data.CLIENT_SECRET,
        "redirect_url": data.REDIRECT_URL,
        "access_token": spec.access_token,
        "refresh_token": spec.refresh_token,
        "grant_token": None,
        "access_token_digest": digest(spec.access_token),
        "refresh_token_digest": digest(spec.refresh_token),
        "grant_token_digest": None,
        "expiry_time": spec.expiry,
        "created_at": data.FILLED_AT,
        "updated_at": data.FILLED_AT,
    }


def fill_table(
    engine: Engine, table: Table, specs: List[data.TokenSpec], cipher=None
) -> None:
    """Bulk-insert the specs' rows; encrypted as the store would, with cipher."""
    for start in range(0, len(specs), CHUNK):
        rows = [store_row(spec) for spec in specs[start : start + CHUNK]]
        if cipher is not None:
            rows = [_sealed(cipher, row) for row in rows]
        with engine.begin() as conn:
            conn.execute(insert(table), rows)


def _sealed(cipher, row: dict) -> dict:
    for name in SECRET_FIELDS:
        if row[name] is not None:
            row[name] = cipher.encrypt(name, row[name])
    return row


def fill_sdk_table(specs: List[data.TokenSpec]) -> None:
    statement = (
        f"INSERT INTO {settings.SDK_TABLE} (id, user_name, client_id, "
        "client_secret, refresh_token, access_token, grant_token, "
        "expiry_time, redirect_url, api_domain) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    conn = mysql_connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            for start in range(0, len(specs), CHUNK):
                chunk = specs[start : start + CHUNK]
                cur.executemany(statement, [data.sdk_row(s) for s in chunk])
        conn.commit()
    finally:
        conn.close()


def append_csv(path: str, specs: Iterable[data.TokenSpec]) -> None:
    """Add rows to the SDK's CSV file as FileStore itself writes them."""
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows(data.sdk_row(spec) for spec in specs)


def analyze_servers(stage) -> None:
    """Fresh planner statistics after a fill, as autovacuum would give."""
    backends = {subject.backend for subject in stage.subjects}
    if "PostgreSQL" in backends:
        conn = pg_connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for name in (settings.OURS_TABLE, settings.FLOOR_TABLE):
                    cur.execute(f"ANALYZE {name}")
        finally:
            conn.close()
        _analyze_encrypted(stage)
    if "MariaDB" in backends:
        conn = mysql_connect()
        try:
            with conn.cursor() as cur:
                names = (settings.OURS_TABLE, settings.FLOOR_TABLE, settings.SDK_TABLE)
                cur.execute(f"ANALYZE TABLE {', '.join(names)}")
                cur.fetchall()
                encrypted = f"{settings.ENCRYPTED_DATABASE}.{settings.OURS_TABLE}"
                cur.execute(f"ANALYZE TABLE {encrypted}")
                cur.fetchall()
        finally:
            conn.close()


def _analyze_encrypted(stage) -> None:
    # PostgreSQL's ANALYZE reaches only the database it is connected to.
    if not any(s.is_encrypted and s.backend == "PostgreSQL" for s in stage.subjects):
        return
    conn = pg_connect(settings.ENCRYPTED_DATABASE)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"ANALYZE {settings.OURS_TABLE}")
    finally:
        conn.close()
