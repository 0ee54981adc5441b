"""The queries on the token table, with no knowledge of any Zoho SDK.

Each public method is one short transaction. Concurrent writers are settled
by the table's unique constraints: a save that loses a race to another
process re-reads the winner's row and updates it, so two workers saving the
same user at once leave one row and no error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Callable, List, Optional, TypeVar

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from . import errors, record as records
from .config import is_memory_sqlite, mask_url
from .model import oauthtoken as table
from .record import TokenRecord, digest
from .types import utc_now

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a save is tried again after losing a race (a unique-key
# conflict, a deadlock, a locked SQLite file) before the error is raised.
SAVE_ATTEMPTS = 8

_COLUMNS = [column.name for column in table.columns]
_SELECT_ALL = select(table)


class _RowVanished(Exception):
    """The row a save meant to update was deleted in between."""


class TokenRepository:
    """Find, save and delete token records through one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # An in-memory SQLite database is one connection shared by every
        # thread; interleaved transactions on it would corrupt each other.
        if is_memory_sqlite(engine.url):
            self._serial = threading.RLock()
        else:
            self._serial = contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"TokenRepository({mask_url(self.engine.url)!r})"

    # -- reads -----------------------------------------------------------

    def find(self, probe: TokenRecord) -> Optional[TokenRecord]:
        """The stored record the probe's keys point at, or None.

        The key is the first the probe carries of: id; user name; access
        token (when no client id is given); grant token; refresh token.
        A probe that carries none matches nothing.
        """
        probe = records.normalized(probe)
        condition, key = lookup_condition(probe)
        if condition is None:
            log.debug("find: the token carries no key; nothing matches")
            return None
        log.debug("find by %s", key)
        statement = (
            _SELECT_ALL.where(condition)
            .order_by(table.c.updated_at.desc())
            .limit(1)
        )
        return self._read("find_token", lambda conn: _first(conn, statement))

    def find_by_id(self, token_id: str) -> Optional[TokenRecord]:
        token_id = records.check_token_id(token_id)
        statement = _SELECT_ALL.where(table.c.id == token_id)
        return self._read("find_by_id", lambda conn: _first(conn, statement))

    def all(self) -> List[TokenRecord]:
        statement = _SELECT_ALL.order_by(table.c.created_at, table.c.id)
        return self._read(
            "get_tokens",
            lambda conn: [_to_record(row) for row in conn.execute(statement)],
        )

    def count(self) -> int:
        statement = select(func.count()).select_from(table)
        return self._read("count", lambda conn: conn.execute(statement).scalar())

    # -- writes ----------------------------------------------------------

    def save(self, record: TokenRecord) -> str:
        """Insert or update the record's row; returns the row's id.

        Fields the record leaves empty keep their stored values: Zoho's
        refresh answer carries no refresh token, and must not erase it.
        """
        record = records.normalized(record)
        secrets = record.secret_values()
        try:
            return self._write(
                "save_token", lambda conn: _upsert(conn, record), secrets
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
        token_id = records.check_token_id(token_id)
        statement = delete(table).where(table.c.id == token_id)
        deleted = self._write(
            "delete_token", lambda conn: conn.execute(statement).rowcount
        )
        if not deleted:
            log.info("delete_token: no token with id %s, nothing deleted", token_id)
        return bool(deleted)

    def delete_all(self) -> int:
        """Delete every row in one statement; returns how many went."""
        deleted = self._write(
            "delete_tokens", lambda conn: conn.execute(delete(table)).rowcount
        )
        log.info("delete_tokens: %d tokens deleted", deleted)
        return deleted

    # -- running statements ----------------------------------------------

    def _read(self, operation: str, work: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self._serial, self.engine.connect() as conn:
                return work(conn)

        return self._run(operation, attempt, attempts=2)

    def _write(
        self, operation: str, work: Callable[[Connection], T], secrets=()
    ) -> T:
        def attempt() -> T:
            with self._serial, self.engine.begin() as conn:
                return work(conn)

        return self._run(operation, attempt, SAVE_ATTEMPTS, secrets)

    def _run(
        self, operation: str, attempt: Callable[[], T], attempts: int, secrets=()
    ) -> T:
        for number in range(1, attempts + 1):
            try:
                return attempt()
            except _RowVanished:
                continue
            except DBAPIError as err:
                if number < attempts and _worth_retrying(err):
                    log.debug("%s: retrying after %s", operation, _kind(err))
                    _back_off(number)
                    continue
                raise self._translate(operation, err, secrets) from err
        raise errors.StoreDatabaseError(
            f"{operation}: the row changed under every one of {attempts} attempts"
        )

    def _translate(
        self, operation: str, err: DBAPIError, secrets
    ) -> errors.SqlStoreError:
        where = mask_url(self.engine.url)
        if _is_missing_table(err):
            return errors.SchemaError(
                f"{operation}: the database at {where} has no {table.name} "
                "table; run `sqlstore upgrade` (or pass create_schema=True)"
            )
        detail = _scrub(_first_line(err), list(secrets))
        return errors.StoreDatabaseError(
            f"{operation} failed on {where}: {_kind(err)}: {detail}"
        )


# -- lookups ---------------------------------------------------------------


def lookup_condition(probe: TokenRecord):
    """The WHERE clause a (normalized) probe selects by, and the key's name."""
    if probe.id:
        return table.c.id == probe.id, "id"
    key = _key_condition(probe)
    if key is None:
        return None, None
    condition, name = key
    if probe.client_id:
        condition = condition & (table.c.client_id == probe.client_id)
    if probe.api_domain:
        condition = condition & (table.c.api_domain == probe.api_domain)
    if probe.grant_token and name == "user_name":
        # A grant token the store has not seen is a new authorization: the
        # SDK must exchange it rather than reuse the user's stored tokens.
        condition = condition & (
            table.c.grant_token_digest == digest(probe.grant_token)
        )
    return condition, name


def _key_condition(probe: TokenRecord):
    if probe.user_name:
        return table.c.user_name == probe.user_name, "user_name"
    if probe.access_token and not probe.client_id:
        return _digest_equals("access_token", probe.access_token)
    for name in ("grant_token", "refresh_token", "access_token"):
        value = getattr(probe, name)
        if value:
            return _digest_equals(name, value)
    return None


def _digest_equals(name: str, value: str):
    column = table.c[f"{name}_digest"]
    return column == digest(value), name


def _first(conn: Connection, statement) -> Optional[TokenRecord]:
    row = conn.execute(statement).first()
    return _to_record(row) if row is not None else None


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


# -- saving ----------------------------------------------------------------


def _upsert(conn: Connection, record: TokenRecord) -> str:
    row_id = _locate_for_save(conn, record)
    if row_id is not None:
        values = _changed_values(record)
        if record.id and record.id != row_id:
            values["id"] = record.id  # the caller's id names the row from now
        result = conn.execute(
            update(table).where(table.c.id == row_id).values(**values)
        )
        if result.rowcount:
            return values.get("id", row_id)
        # Deleted since we looked: the next attempt inserts it afresh.
        raise _RowVanished()
    new_id = record.id or str(uuid.uuid4())
    conn.execute(insert(table).values(**_insert_values(record, new_id)))
    return new_id


def _locate_for_save(conn: Connection, record: TokenRecord) -> Optional[str]:
    """The id of the row this record updates, or None to insert one."""
    candidates = []
    if record.id:
        candidates.append(table.c.id == record.id)
    probe = TokenRecord(**{**record.__dict__, "id": None, "grant_token": None})
    condition, _ = lookup_condition(probe)
    if condition is not None:
        candidates.append(condition)
    if record.refresh_token:
        # A row stored before the SDK knew the user's name is the same
        # authorization when it holds the same refresh token.
        same_user = table.c.user_name.is_(None)
        if record.user_name:
            same_user = same_user | (table.c.user_name == record.user_name)
        candidates.append(
            (table.c.refresh_token_digest == digest(record.refresh_token))
            & same_user
        )
    for condition in candidates:
        statement = (
            select(table.c.id)
            .where(condition)
            .order_by(table.c.updated_at.desc())
            .limit(1)
        )
        row_id = conn.execute(statement).scalar()
        if row_id is not None:
            return row_id
    return None


def _changed_values(record: TokenRecord) -> dict:
    values = {
        name: getattr(record, name)
        for name in _COLUMNS
        if name in records.MAX_LENGTHS or name == "expiry_time"
    }
    values = {k: v for k, v in values.items() if v is not None and k != "id"}
    for name in records.TOKEN_FIELDS:
        if name in values:
            values[f"{name}_digest"] = digest(values[name])
    values["updated_at"] = utc_now()
    return values


def _insert_values(record: TokenRecord, new_id: str) -> dict:
    values = _changed_values(record)
    values["id"] = new_id
    values.setdefault("client_id", "")
    values.setdefault("api_domain", "")
    values["created_at"] = values["updated_at"]
    return values


# -- errors ----------------------------------------------------------------

# Errors that a second try can win: unique-key races, deadlocks,
# serialization failures, a locked SQLite file, a connection the server
# dropped while idle in the pool.
_RETRY_SQLSTATES = {"40001", "40P01"}
_RETRY_MYSQL_CODES = {1205, 1213}
_MISSING_TABLE_SQLSTATES = {"42P01"}
_MISSING_TABLE_MYSQL_CODES = {1146}


def _worth_retrying(err: DBAPIError) -> bool:
    if isinstance(err, IntegrityError) or err.connection_invalidated:
        return True
    orig = err.orig
    if getattr(orig, "pgcode", None) in _RETRY_SQLSTATES:
        return True
    if _mysql_code(orig) in _RETRY_MYSQL_CODES:
        return True
    message = str(orig).lower()
    return "database is locked" in message or "database is busy" in message


def _is_missing_table(err: DBAPIError) -> bool:
    orig = err.orig
    if getattr(orig, "pgcode", None) in _MISSING_TABLE_SQLSTATES:
        return True
    if _mysql_code(orig) in _MISSING_TABLE_MYSQL_CODES:
        return True
    return "no such table" in str(orig).lower()


def _mysql_code(orig) -> Optional[int]:
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _kind(err: DBAPIError) -> str:
    return type(err.orig).__name__ if err.orig is not None else type(err).__name__


def _first_line(err: DBAPIError) -> str:
    text = str(err.orig) if err.orig is not None else str(err)
    return text.strip().splitlines()[0] if text.strip() else "no message"


def _back_off(attempt: int) -> None:
    # Short, growing pauses: the competing transaction is one row long.
    time.sleep(min(0.2, 0.005 * 2**attempt) * (0.5 + uuid.uuid4().int % 100 / 100))


def _scrub(text: str, secrets: List[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
