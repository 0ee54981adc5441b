"""Re-encrypting the table in place: ``sqlstore encrypt`` and ``rotate-key``.

The table is walked in id order, a small batch per transaction. Each row
is rewritten by a compare-and-set: the UPDATE names the row's id and the
stored values it read, so a save the application made in between is
never overwritten. The row is then read again and tried again. A crash
rolls back the open batch and leaves every row either as it was or fully
rewritten; a second run skips what the first finished.

Digests are never touched: they are of the plain values, the same under
every key, so a row's place in the indexes does not move. ``updated_at``
is kept too, since it says when the application last saved the row, and a
lookup by user name picks the most recently saved of the user's rows.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Dict, List, Optional, Tuple, Union

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from . import dberrors, errors
from .config import create_store_engine, mask_url
from .crypto import MARKER, Encrypting
from .model import oauthtoken as table
from .record import SECRET_FIELDS, TOKEN_FIELDS

log = logging.getLogger(__name__)

BATCH_SIZE = 100
# How often one row is read again after a save changed it under us.
ROW_TRIES = 5
# How often a batch is run again after a deadlock or a dropped connection.
BATCH_TRIES = 8
# Failed rows listed by id in the report, at most.
SHOWN_FAILURES = 20

_DIGESTS = tuple(f"{name}_digest" for name in TOKEN_FIELDS)
_COLUMNS = (
    table.c.id,
    *(table.c[name] for name in SECRET_FIELDS),
    *(table.c[name] for name in _DIGESTS),
)
_FIRST_BATCH = select(*_COLUMNS).order_by(table.c.id)
_ROW = select(*_COLUMNS)
_COUNT = select(func.count()).select_from(table)


@dataclasses.dataclass
class Tally:
    """What a run did, row by row.

    rewritten: rows whose values it encrypted or re-encrypted.
    already: rows that needed nothing.
    raced: times a row changed between its read and its rewrite; each was
        read again and retried.
    gone: rows deleted while the run was at them.
    failed: rows it could not rewrite; their ids are in failures.
    """

    rewritten: int = 0
    already: int = 0
    raced: int = 0
    gone: int = 0
    failed: int = 0
    failures: List[str] = dataclasses.field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.rewritten + self.already + self.gone + self.failed

    def add(self, other: "Tally") -> None:
        for field in ("rewritten", "already", "raced", "gone", "failed"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        room = SHOWN_FAILURES - len(self.failures)
        self.failures += other.failures[: max(room, 0)]

    def describe(self, verb: str) -> str:
        return (
            f"{self.rows} rows: {self.rewritten} {verb}, {self.already} "
            f"already done, {self.raced} changed meanwhile and retried, "
            f"{self.gone} deleted meanwhile, {self.failed} failed"
        )


class _Unreadable(Exception):
    """A value that none of the keys opens, or that cannot be encrypted."""


def encrypt(target, cipher: Encrypting, **options) -> Tally:
    """Encrypt every plain-text value under the first key.

    Values already encrypted, under whichever key, are left as they are.
    """
    return _walk(target, cipher, rotate=False, **options)


def rotate(target, cipher: Encrypting, **options) -> Tally:
    """Re-encrypt every value not under the first key (plain ones too)."""
    return _walk(target, cipher, rotate=True, **options)


def count_rows(target: Union[str, Engine]) -> int:
    """The rows a run will visit, for its progress bar."""
    engine, made = _engine(target)
    try:
        with engine.connect() as conn:
            return conn.execute(_COUNT).scalar()
    finally:
        if made:
            engine.dispose()


def _walk(
    target: Union[str, Engine],
    cipher: Encrypting,
    *,
    rotate: bool,
    batch_size: int = BATCH_SIZE,
    progress: Optional[Callable[[int], None]] = None,
) -> Tally:
    if not getattr(cipher, "encrypts", False):
        raise errors.ConfigurationError("re-encrypting the table needs keys")
    engine, made = _engine(target)
    tally, after = Tally(), None
    try:
        while True:
            done, after = _batch(engine, cipher, rotate, after, batch_size)
            if done is None:
                return tally
            tally.add(done)
            if progress is not None:
                progress(done.rows)
    finally:
        if made:
            engine.dispose()


def _engine(target) -> Tuple[Engine, bool]:
    if isinstance(target, Engine):
        return target, False
    return create_store_engine(target), True


def _batch(engine, cipher, rotate, after, size) -> Tuple[Optional[Tally], object]:
    """One batch in one transaction; (None, after) when no rows are left."""
    for number in range(1, BATCH_TRIES + 1):
        try:
            with engine.begin() as conn:
                rows = _next_rows(conn, after, size)
                if not rows:
                    return None, after
                done = Tally()
                for row in rows:
                    _rewrite(conn, cipher, rotate, row, done)
            return done, rows[-1].id
        except DBAPIError as err:
            # The batch rolled back whole: its rows are as they were.
            if number < BATCH_TRIES and dberrors.is_transient(err):
                log.debug("re-encrypting: retrying a batch after %s",
                          dberrors.kind(err))
                dberrors.back_off(number)
                continue
            raise errors.StoreDatabaseError(
                f"re-encrypting {mask_url(engine.url)} failed: "
                f"{dberrors.kind(err)}: {dberrors.describe(err)}"
            ) from err
    raise AssertionError("unreachable")  # pragma: no cover


def _next_rows(conn: Connection, after, size: int) -> list:
    statement = _FIRST_BATCH.limit(size)
    if after is not None:
        statement = statement.where(table.c.id > after)
    return list(conn.execute(statement))


def _rewrite(conn: Connection, cipher, rotate: bool, row, done: Tally) -> None:
    """Bring one row under the first key, read again if it changes."""
    row_id = row.id
    for _ in range(ROW_TRIES):
        try:
            changes = _changes(cipher, rotate, row)
        except _Unreadable as err:
            _failed(done, row_id, str(err))
            return
        if not changes:
            done.already += 1
            return
        if _compare_and_set(conn, row, changes):
            done.rewritten += 1
            return
        done.raced += 1
        row = conn.execute(_ROW.where(table.c.id == row_id)).first()
        if row is None:
            done.gone += 1
            return
    _failed(done, row_id, f"it changed under each of {ROW_TRIES} tries")


def _failed(done: Tally, row_id: str, why: str) -> None:
    log.warning("re-encrypting: token row %s left as it was: %s", row_id, why)
    done.failed += 1
    done.failures.append(f"{row_id}: {why}")


def _changes(cipher: Encrypting, rotate: bool, row) -> Dict[str, tuple]:
    """Per column to rewrite: (value read, value to write)."""
    changes = {}
    for name in SECRET_FIELDS:
        old = getattr(row, name)
        if old is None:
            continue
        new = _new_value(cipher, rotate, name, old)
        if new is not None:
            changes[name] = (old, new)
    return changes


def _new_value(cipher: Encrypting, rotate: bool, name: str, old: str):
    """The value to store instead, or None when it is done already."""
    if not old.startswith(MARKER):
        plain = old
    elif not rotate or cipher.under_first_key(old):
        return None
    else:
        plain = cipher.decrypt(old)
        if plain is None:
            raise _Unreadable(
                f"its {name} opens with none of the {cipher.key_count} key(s)"
            )
    try:
        return cipher.encrypt(name, plain)
    except ValueError as err:
        raise _Unreadable(str(err)) from None


def _compare_and_set(conn: Connection, row, changes: Dict[str, tuple]) -> bool:
    """Write the new values if the row still holds the ones read."""
    condition = table.c.id == row.id
    for name, (old, _) in changes.items():
        condition &= table.c[name] == old
    # MySQL compares text padded with spaces; the digests of the plain
    # values tell a token "T" from "T " apart on every backend.
    for name in _DIGESTS:
        condition &= table.c[name] == getattr(row, name)
    values = {name: new for name, (_, new) in changes.items()}
    # Set to itself: without it SQLAlchemy would stamp the row as saved now.
    values["updated_at"] = table.c.updated_at
    statement = update(table).where(condition).values(**values)
    return conn.execute(statement).rowcount == 1

