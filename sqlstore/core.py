"""The queries on the token table, with no knowledge of any Zoho SDK.

Two engines share the work. Lookups, and writes that are one statement,
run on an autocommit engine: one round trip each, with no BEGIN before and
no ROLLBACK after. A save that must first find its row runs as one short
transaction on the other. Concurrent writers are settled by the table's
unique constraints: a save that loses a race re-reads the winner's row and
updates it, so two workers saving the same user at once leave one row and
no error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Callable, List, Optional, TypeVar

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from . import crypto, dberrors, errors, forks
from . import record as records
from .config import EngineOptions, is_memory_sqlite, mask_url
from .direct import ConnectionQueries, DirectQueries
from .lookup import (
    RECORD_COLUMNS,
    Lookup,
    find_statement,
    id_statement,
    lookup_for,
    newest,
)
from .model import oauthtoken as table
from .record import TokenRecord, digest
from .types import utc_now

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a call is tried after losing a race (a unique-key conflict, a
# deadlock, a locked SQLite file) or a pooled connection, before the error
# is raised.
ATTEMPTS = 16
# ...and for how long. Lost races and dropped pooled connections fail in
# milliseconds; an error that took long to come (a timeout of a stalled
# server, a lock wait) would take as long again on every attempt.
RETRY_WINDOW = 2.0

# The columns a save may set; everything but the timestamps it manages.
_SETTABLE = [
    name for name in records.MAX_LENGTHS if name != "id"
] + ["expiry_time"]

_SELECT_BY_ID = select(*RECORD_COLUMNS).where(table.c.id == bindparam("key"))
_SELECT_ALL = select(*RECORD_COLUMNS).order_by(table.c.created_at, table.c.id)
_COUNT = select(func.count().label("tokens")).select_from(table)
_UPDATE_BY_ID = update(table).where(table.c.id == bindparam("row_id"))
# A save by id writes only over the authorization it came from: a worker
# that read the row before the user authorized again holds the old refresh
# token, and its refresh must not bring that authorization back.
_UPDATE_SAME_AUTHORIZATION = _UPDATE_BY_ID.where(
    table.c.refresh_token_digest.is_(None)
    | (table.c.refresh_token_digest == bindparam("same_refresh"))
)
_EXISTS_BY_ID = select(table.c.id).where(table.c.id == bindparam("key"))
_INSERT = insert(table)
_DELETE_BY_ID = delete(table).where(table.c.id == bindparam("key"))
_DELETE_ALL = delete(table)
# Every save ends the refresh lease on its row: the save of the worker
# that refreshed is what the others wait for (see sqlstore.lease).
_LEASE_RELEASED = {"lease_owner": None, "lease_until": None}
# A row saved before the SDK knew the user's name is the same authorization
# as a later save with the same refresh token.
_SAME_REFRESH = (
    select(table.c.id)
    .where(table.c.refresh_token_digest == bindparam("key"))
    .where(
        table.c.user_name.is_(None)
        | (table.c.user_name == bindparam("user_name"))
    )
    .limit(1)
)


class _RowVanished(Exception):
    """The row a save meant to update was deleted in between."""


class TokenRepository:
    """Find, save and delete token records.

    engine: runs the transactions.
    autocommit_engine: runs single statements; an engine on the same
        database with ``isolation_level="AUTOCOMMIT"``. Without one, they
        run on ``engine`` too, each in a transaction of its own.
    options: the pool settings the autocommit engine was made with.
    cipher: what the token values are stored as (``sqlstore.crypto``):
        plain text unless keys were given.
    """

    def __init__(
        self,
        engine: Engine,
        autocommit_engine: Optional[Engine] = None,
        options: EngineOptions = EngineOptions(),
        cipher: "crypto.PlainText | crypto.Encrypting" = crypto.PlainText(),
    ):
        self.engine = engine
        self.cipher = cipher
        self.autocommit_engine = autocommit_engine or engine
        # An in-memory SQLite database is one connection shared by every
        # thread; interleaved transactions on it would corrupt each other.
        if is_memory_sqlite(engine.url):
            self._serial = threading.RLock()
        else:
            self._serial = contextlib.nullcontext()
        # Lone statements: straight on the driver where they autocommit,
        # else each in a transaction of its own.
        if autocommit_engine is not None:
            self._queries = DirectQueries(
                autocommit_engine, options.pool_size, options.pool_recycle
            )
        else:
            self._queries = ConnectionQueries(engine, self._serial)
        forks.reset_after_fork(self)

    def __repr__(self) -> str:
        return f"TokenRepository({mask_url(self.engine.url)!r})"

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._queries.dispose()
        self.engine.dispose()
        if self.autocommit_engine is not self.engine:
            self.autocommit_engine.dispose()

    def after_fork_in_child(self) -> None:
        """Drop the parent's connections, unclosed (see ``sqlstore.forks``)."""
        if is_memory_sqlite(self.engine.url):
            return  # the database is that one connection, copied into the child
        self._queries.forget()
        self.engine.dispose(close=False)
        if self.autocommit_engine is not self.engine:
            self.autocommit_engine.dispose(close=False)

    # -- reads -----------------------------------------------------------

    def find(self, probe: TokenRecord) -> Optional[TokenRecord]:
        """The stored record the probe's keys point at, or None.

        The key is the first the probe carries of: id; user name; access
        token (when no client id is given); grant token; refresh token.
        A probe that carries none matches nothing.
        """
        probe = records.normalized(probe)
        lookup = lookup_for(probe)
        if lookup is None:
            log.debug("find_token: the token carries no key; nothing matches")
            return None
        log.debug("find_token by %s", lookup.key)
        parameters = lookup.parameters(probe)
        rows = self._rows("find_token", find_statement(lookup), parameters)
        return self._opened(_newest_record(rows))

    def find_by_id(self, token_id: str) -> Optional[TokenRecord]:
        parameters = {"key": records.check_token_id(token_id)}
        rows = self._rows("find_token_by_id", _SELECT_BY_ID, parameters)
        return self._opened(_newest_record(rows))

    def all(self) -> List[TokenRecord]:
        rows = self._rows("get_tokens", _SELECT_ALL, {})
        return [self.cipher.open(_to_record(row)) for row in rows]

    def _opened(self, record: Optional[TokenRecord]) -> Optional[TokenRecord]:
        # Only the one row the caller gets is decrypted.
        return self.cipher.open(record) if record is not None else None

    def count(self) -> int:
        return self._rows("count", _COUNT, {})[0].tokens

    # -- writes ----------------------------------------------------------

    def save(self, record: TokenRecord) -> str:
        """Insert or update the record's row; returns the row's id.

        Fields the record leaves empty keep their stored values: Zoho's
        refresh answer carries no refresh token, and must not erase it.
        """
        try:
            record = records.normalized(record)
            # Encrypted once per save, however many attempts it takes.
            sealed = self.cipher.seal(record)
        except (TypeError, ValueError) as err:
            log.error("token not saved: %s", err)
            raise
        secrets = record.secret_values()
        try:
            if record.id and self._update_in_place(record, secrets, sealed):
                return record.id
            if _holds_whole_key(record):
                inserted = self._insert_alone(record, secrets, sealed)
                if inserted is not None:
                    return inserted
            return self._run(
                "save_token", lambda: self._upsert(record, sealed), secrets
            )
        except errors.SqlStoreError as err:
            # Zoho's SDK logs and swallows save errors, so a token that was
            # not kept would vanish without a trace: say so here.
            log.error(
                "token not saved (id=%s, user=%s): %s",
                record.id,
                record.user_name,
                err,
            )
            raise

    def delete(self, token_id: str) -> bool:
        """Delete one row; False when there was none with that id."""
        parameters = {"key": records.check_token_id(token_id)}
        deleted = self._rowcount("delete_token", _DELETE_BY_ID, parameters)
        if not deleted:
            log.info("delete_token: no token with id %s, nothing deleted", token_id)
        return bool(deleted)

    def delete_all(self) -> int:
        """Delete every row in one statement; returns how many went."""
        deleted = self._rowcount("delete_tokens", _DELETE_ALL, {})
        log.info("delete_tokens: %d tokens deleted", deleted)
        return deleted

    def _update_in_place(self, record: TokenRecord, secrets, sealed) -> bool:
        # The SDK's refresh saves a token that has an id: one UPDATE, no
        # transaction around it. Nothing updated: the full save decides.
        statement, parameters = _update_by_id(record, record.id, sealed)
        # A unique key refusing an update by id is no race: the values
        # belong to another row, and trying again will not change that.
        updated = self._rowcount(
            "save_token", statement, parameters, secrets, retry_conflicts=False
        )
        return updated > 0

    def _insert_alone(self, record: TokenRecord, secrets, sealed) -> Optional[str]:
        # A new user's first save (the SDK's, after a grant exchange) is one
        # INSERT, with no transaction around it. A unique key refusing it
        # means a row exists: the full save then finds and updates it, one
        # wasted round trip for a save without an id of a known user.
        values = _insert_values(record, sealed)
        run = self._queries.rowcount

        def attempt() -> Optional[str]:
            try:
                run(_INSERT, values)
            except IntegrityError:
                return None
            return values["id"]

        return self._run("save_token", attempt, secrets)

    def _upsert(self, record: TokenRecord, sealed: dict) -> str:
        with self._serial, self.engine.begin() as conn:
            row_id = _locate_for_save(conn, record)
            if row_id is None:
                return _insert(conn, record, sealed)
            return _update(conn, record, row_id, sealed)

    # -- statements of sqlstore.lease, run like the store's own ----------

    def record_of(self, row) -> TokenRecord:
        """The record of a row that starts with RECORD_COLUMNS, opened."""
        return self.cipher.open(_to_record(row[: len(RECORD_COLUMNS)]))

    def run_rows(self, operation: str, statement, parameters: dict) -> list:
        """The rows of a SELECT, with the store's retries and errors."""
        return self._rows(operation, statement, parameters)

    def run_rowcount(self, operation: str, statement, parameters: dict) -> int:
        """The rows an UPDATE, INSERT or DELETE changed, likewise."""
        return self._rowcount(operation, statement, parameters)

    # -- running statements ----------------------------------------------

    def _rows(self, operation, statement, parameters) -> list:
        """The rows of one SELECT, retried if need be."""
        run = self._queries.rows
        return self._run(operation, lambda: run(statement, parameters))

    def _rowcount(self, operation, statement, parameters, secrets=(), **retry):
        """The rows one UPDATE or DELETE changed, retried if need be."""
        run = self._queries.rowcount
        return self._run(
            operation, lambda: run(statement, parameters), secrets, **retry
        )

    def _run(
        self,
        operation: str,
        attempt: Callable[[], T],
        secrets=(),
        retry_conflicts: bool = True,
    ) -> T:
        give_up = time.monotonic() + RETRY_WINDOW
        for number in range(1, ATTEMPTS + 1):
            try:
                return attempt()
            except _RowVanished:
                dberrors.back_off(number)
                continue
            except PoolTimeout as err:
                # Every pooled connection is busy: the database is too slow
                # or away, which the caller must hear the same way.
                raise errors.StoreDatabaseError(
                    f"{operation}: no free connection to "
                    f"{mask_url(self.engine.url)} in the pool's wait time"
                ) from err
            except DBAPIError as err:
                conflict = retry_conflicts and dberrors.is_conflict(err)
                retry = conflict or dberrors.is_transient(err)
                if number < ATTEMPTS and retry and time.monotonic() < give_up:
                    log.debug("%s: retrying after %s", operation, dberrors.kind(err))
                    dberrors.back_off(number)
                    continue
                translated = self._translate(operation, err, secrets)
                dberrors.scrub(err, secrets)
                raise translated from err
        raise errors.StoreDatabaseError(
            f"{operation}: the row changed under each of {ATTEMPTS} attempts"
        )

    def _translate(self, operation, err: DBAPIError, secrets) -> errors.SqlStoreError:
        where = mask_url(self.engine.url)
        if dberrors.is_missing_table(err):
            return errors.SchemaError(
                f"{operation}: the database at {where} has no {table.name} "
                "table; run `sqlstore upgrade` (or pass create_schema=True)"
            )
        if dberrors.is_missing_column(err):
            return errors.SchemaError(
                f"{operation}: the {table.name} table at {where} is older "
                "than this sqlstore; run `sqlstore upgrade`"
            )
        return errors.StoreDatabaseError(
            f"{operation} failed on {where}: {dberrors.kind(err)}: "
            f"{dberrors.describe(err, secrets)}"
        )


def tool_repository(engine: Engine) -> TokenRepository:
    """A repository for the command line's tools: one engine, and the
    environment's encryption keys (``SQLSTORE_ENCRYPTION_KEYS``)."""
    return TokenRepository(engine, cipher=crypto.cipher_for(None))


# -- reading results ---------------------------------------------------------


def _newest_record(result) -> Optional[TokenRecord]:
    row = newest(result)
    return _to_record(row) if row is not None else None


def _to_record(row) -> TokenRecord:
    """The record of a row selected as RECORD_COLUMNS."""
    record = TokenRecord(*row)
    # The key columns hold '' for "not known" (see the model); records None.
    record.client_id = record.client_id or None
    record.api_domain = record.api_domain or None
    return record


# -- saving ------------------------------------------------------------------


def _locate_for_save(conn: Connection, record: TokenRecord) -> Optional[str]:
    """The id of the row this record updates, or None to insert one."""
    if record.id:
        found = conn.execute(id_statement(Lookup("id")), {"key": record.id})
        row = newest(found)
        if row is not None:
            return row.id
    # Saving is keyed like finding, except that a grant token does not
    # narrow: a new authorization replaces the user's row.
    probe = TokenRecord(**{**record.__dict__, "id": None, "grant_token": None})
    lookup = lookup_for(probe)
    if lookup is not None:
        found = conn.execute(id_statement(lookup), lookup.parameters(probe))
        row = newest(found)
        if row is not None:
            return row.id
    if record.refresh_token:
        parameters = {
            "key": digest(record.refresh_token),
            "user_name": record.user_name,
        }
        return conn.execute(_SAME_REFRESH, parameters).scalar()
    return None


def _update(conn: Connection, record: TokenRecord, row_id: str, sealed) -> str:
    if record.id != row_id:
        # Found by its keys: a new authorization of the user, or a token
        # whose id the table does not know; it replaces what is stored.
        statement, parameters = _UPDATE_BY_ID, _changed_values(record, sealed)
        parameters["row_id"] = row_id
    else:
        statement, parameters = _update_by_id(record, row_id, sealed)
    if conn.execute(statement, parameters).rowcount:
        return row_id
    if conn.execute(_EXISTS_BY_ID, {"key": row_id}).first() is None:
        raise _RowVanished()
    log.info(
        "save_token: row %s holds a newer authorization than this token; "
        "its tokens were kept",
        row_id,
    )
    return row_id


def _update_by_id(record: TokenRecord, row_id: str, sealed):
    """The UPDATE of a save by id, guarded when it carries a refresh token."""
    parameters = dict(_changed_values(record, sealed), row_id=row_id)
    if not record.refresh_token:
        return _UPDATE_BY_ID, parameters
    parameters["same_refresh"] = digest(record.refresh_token)
    return _UPDATE_SAME_AUTHORIZATION, parameters


def _holds_whole_key(record: TokenRecord) -> bool:
    """Whether the record names its user, client and data centre.

    Then the row it would update is the one holding that unique key, and
    an INSERT that no unique key refuses is what the full save would do.
    """
    return bool(record.user_name and record.client_id and record.api_domain)


# -- whole rows on a caller's connection ------------------------------------
#
# For tools that work on many rows inside one transaction of their own
# (imports, the adoption of the SDK's table): they decide which row a
# record goes to, and write it through the same column mapping, and the
# same cipher, as a save. Without a cipher they take the environment's
# keys (``SQLSTORE_ENCRYPTION_KEYS``), as the command line does.

Cipher = "crypto.PlainText | crypto.Encrypting"


def read_records(
    conn: Connection, cipher: Optional[Cipher] = None
) -> List[TokenRecord]:
    """Every stored record, oldest first, opened with the cipher."""
    cipher = _or_environment(cipher)
    return [cipher.open(_to_record(row)) for row in conn.execute(_SELECT_ALL)]


def insert_records(
    conn: Connection,
    batch: List[TokenRecord],
    cipher: Optional[Cipher] = None,
) -> List[str]:
    """Insert new rows in one statement; returns their ids, in order.

    The records must be normalized (``record.normalized``); one without
    an id gets a new UUID.
    """
    if not batch:
        return []
    cipher = _or_environment(cipher)
    rows = [_insert_values(record, cipher.seal(record)) for record in batch]
    # One shape for every row of an executemany: columns a record leaves
    # empty are written as NULL, which is what a new row holds anyway.
    columns = set().union(*rows)
    conn.execute(_INSERT, [{name: row.get(name) for name in columns} for row in rows])
    return [row["id"] for row in rows]


def overwrite_record(
    conn: Connection,
    row_id: str,
    record: TokenRecord,
    cipher: Optional[Cipher] = None,
) -> bool:
    """Write the fields the record knows over one row, whatever it holds.

    Unlike a save, this does not keep a newer authorization: the caller
    has decided the record replaces it. False when the row is gone.
    """
    sealed = _or_environment(cipher).seal(record)
    parameters = dict(_changed_values(record, sealed), row_id=row_id)
    return conn.execute(_UPDATE_BY_ID, parameters).rowcount > 0


def _or_environment(cipher: Optional[Cipher]) -> Cipher:
    return cipher if cipher is not None else crypto.cipher_for(None)


def _insert(conn: Connection, record: TokenRecord, sealed) -> str:
    values = _insert_values(record, sealed)
    conn.execute(_INSERT, values)
    return values["id"]


def _insert_values(record: TokenRecord, sealed) -> dict:
    values = _changed_values(record, sealed)
    values.setdefault("client_id", "")
    values.setdefault("api_domain", "")
    values.update(id=record.id or new_token_id(), created_at=values["updated_at"])
    return values


def new_token_id() -> str:
    """The id of a row saved without one: random, so never taken twice."""
    return str(uuid.uuid4())


def _changed_values(record: TokenRecord, sealed) -> dict:
    """The columns a save sets: every field the record knows, and digests.

    sealed: the stored (encrypted) form of the record's secrets, if any.
    Digests are of the plain values, so lookups need no key.
    """
    values = {}
    for name in _SETTABLE:
        value = getattr(record, name)
        if value is not None:
            values[name] = value
    for name in records.TOKEN_FIELDS:
        if name in values:
            values[f"{name}_digest"] = digest(values[name])
    values.update(sealed)
    values.update(_LEASE_RELEASED)
    values["updated_at"] = utc_now()
    return values
