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
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from . import dberrors, errors
from . import record as records
from .config import is_memory_sqlite, mask_url
from .direct import ConnectionQueries, DirectQueries
from .lookup import Lookup, find_statement, id_statement, lookup_for, newest
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

_SELECT_BY_ID = select(table).where(table.c.id == bindparam("key"))
_SELECT_ALL = select(table).order_by(table.c.created_at, table.c.id)
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
    """

    def __init__(self, engine: Engine, autocommit_engine: Optional[Engine] = None):
        self.engine = engine
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
            self._queries = DirectQueries(autocommit_engine)
        else:
            self._queries = ConnectionQueries(engine, self._serial)

    def __repr__(self) -> str:
        return f"TokenRepository({mask_url(self.engine.url)!r})"

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.autocommit_engine is not self.engine:
            self.autocommit_engine.dispose()

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
        return _newest_record(rows)

    def find_by_id(self, token_id: str) -> Optional[TokenRecord]:
        parameters = {"key": records.check_token_id(token_id)}
        return _newest_record(self._rows("find_token_by_id", _SELECT_BY_ID, parameters))

    def all(self) -> List[TokenRecord]:
        return [_to_record(row) for row in self._rows("get_tokens", _SELECT_ALL, {})]

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
        except (TypeError, ValueError) as err:
            log.error("token not saved: %s", err)
            raise
        secrets = record.secret_values()
        try:
            if record.id and self._update_in_place(record, secrets):
                return record.id
            return self._run(
                "save_token", lambda: self._upsert(record), secrets
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

    def _update_in_place(self, record: TokenRecord, secrets) -> bool:
        # The SDK's refresh saves a token that has an id: one UPDATE, no
        # transaction around it. Nothing updated: the full save decides.
        statement, parameters = _update_by_id(record, record.id)
        # A unique key refusing an update by id is no race: the values
        # belong to another row, and trying again will not change that.
        updated = self._rowcount(
            "save_token", statement, parameters, secrets, retry_conflicts=False
        )
        return updated > 0

    def _upsert(self, record: TokenRecord) -> str:
        with self._serial, self.engine.begin() as conn:
            row_id = _locate_for_save(conn, record)
            if row_id is None:
                return _insert(conn, record)
            return _update(conn, record, row_id)

    # -- statements of sqlstore.lease, run like the store's own ----------

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


# -- reading results ---------------------------------------------------------


def _newest_record(result) -> Optional[TokenRecord]:
    row = newest(result)
    return _to_record(row) if row is not None else None


def record_of(row) -> TokenRecord:
    """The record a row of the token table holds."""
    return _to_record(row)


def _to_record(row) -> TokenRecord:
    values = row._mapping
    return TokenRecord(
        id=values["id"],
        user_name=values["user_name"],
        client_id=values["client_id"] or None,
        client_secret=values["client_secret"],
        refresh_token=values["refresh_token"],
        access_token=values["access_token"],
        grant_token=values["grant_token"],
        redirect_url=values["redirect_url"],
        api_domain=values["api_domain"] or None,
        expiry_time=values["expiry_time"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )


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


def _update(conn: Connection, record: TokenRecord, row_id: str) -> str:
    if record.id != row_id:
        # Found by its keys: a new authorization of the user, or a token
        # whose id the table does not know; it replaces what is stored.
        statement, parameters = _UPDATE_BY_ID, _changed_values(record)
        parameters["row_id"] = row_id
    else:
        statement, parameters = _update_by_id(record, row_id)
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


def _update_by_id(record: TokenRecord, row_id: str):
    """The UPDATE of a save by id, guarded when it carries a refresh token."""
    parameters = dict(_changed_values(record), row_id=row_id)
    if not record.refresh_token:
        return _UPDATE_BY_ID, parameters
    parameters["same_refresh"] = digest(record.refresh_token)
    return _UPDATE_SAME_AUTHORIZATION, parameters


def _insert(conn: Connection, record: TokenRecord) -> str:
    new_id = record.id or str(uuid.uuid4())
    values = _changed_values(record)
    values.setdefault("client_id", "")
    values.setdefault("api_domain", "")
    values.update(id=new_id, created_at=values["updated_at"])
    conn.execute(_INSERT, values)
    return new_id


def _changed_values(record: TokenRecord) -> dict:
    """The columns a save sets: every field the record knows, and digests."""
    values = {}
    for name in _SETTABLE:
        value = getattr(record, name)
        if value is not None:
            values[name] = value
    for name in records.TOKEN_FIELDS:
        if name in values:
            values[f"{name}_digest"] = digest(values[name])
    values.update(_LEASE_RELEASED)
    values["updated_at"] = utc_now()
    return values
