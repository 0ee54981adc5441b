"""Importing the rows of the SDK's own stores into the token table.

An import is planned in full before anything is written, then written in
one transaction on the caller's connection: it happens whole or not at
all, and ``dry_run`` reports exactly what a real run would do.

The plan, row by row:

1. **Check.** Each row becomes a record under the same rules as a save
   (``record.normalized``: lengths, NUL characters, user names in NFC,
   trimmed and lower-cased) and ``expiry_time`` is read as epoch
   milliseconds. A row that fails, or holds no token at all, is rejected
   with the reason; its values are never shown.
2. **Settle duplicates.** Rows for the same user, client id and data
   centre (``api_domain``) are one token to us. The row whose access
   token expires last wins, as the one refreshed most recently; on equal
   expiry (or none) the later row wins: the later line of a file, the
   higher id of a table. Rows without a user name are told apart by their
   refresh token, else their access token, else their grant token.
3. **Match.** Each winner goes to the stored row with its user, client
   and data centre; failing that, to the row holding its refresh token
   (when one of the two has no user name: the same authorization, saved
   before the SDK knew the user). A row equal to what is stored, in every
   field it carries, is left alone; so is a stored row whose access token
   expires later than the imported one's. Otherwise the stored row is
   overwritten and keeps its id. A winner that matches nothing is
   inserted under its own id, or a new one if that id is taken.

Running the same import twice therefore changes nothing the second time.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, ContextManager, Dict, Iterable, List, Optional, Tuple

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from . import core, dberrors
from . import record as records
from .config import mask_url
from .errors import SqlStoreError, StoreDatabaseError
from .record import TokenRecord, digest
from .sdkformats import SourceRow, to_record

# Rows inserted per statement.
INSERT_BATCH = 500
# Fields compared to tell "unchanged" from "updated"; ids are not: a
# stored row keeps its id.
_COMPARED = (
    "user_name",
    "client_id",
    "api_domain",
    "client_secret",
    "redirect_url",
    "access_token",
    "refresh_token",
    "grant_token",
    "expiry_time",
)
_NAMELESS_KEYS = ("refresh_token", "access_token", "grant_token")

Progress = Callable[[int], ContextManager[Callable[[int], None]]]


class ImportRefused(SqlStoreError):
    """A strict import found rows it cannot take; nothing was written."""


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A row left out, where it is, and why (never its values)."""

    where: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Settled:
    """Rows for one token, of which one was kept."""

    token: str
    kept: str
    dropped: Tuple[str, ...]


@dataclasses.dataclass
class ImportReport:
    """What an import did, or would do with ``dry_run``."""

    source: str
    read: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_newer: int = 0
    new_ids: int = 0
    duplicates: List[Settled] = dataclasses.field(default_factory=list)
    rejected: List[Rejected] = dataclasses.field(default_factory=list)
    dry_run: bool = False

    @property
    def dropped(self) -> int:
        return sum(len(settled.dropped) for settled in self.duplicates)

    def summary(self) -> str:
        """One line of counts."""
        line = (
            f"{self.source}: {_counted(self.read, 'row')} read; "
            f"{self.imported} imported, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.kept_newer} kept (stored is "
            f"newer); {_counted(len(self.duplicates), 'duplicate')} settled "
            f"({_counted(self.dropped, 'row')} dropped); "
            f"{len(self.rejected)} rejected"
        )
        return line + ("; nothing written (dry run)" if self.dry_run else "")

    def details(self) -> List[str]:
        """A line for each settled duplicate, rejected row and new id."""
        lines = [
            f"duplicate: {s.token}: kept {s.kept}, dropped {', '.join(s.dropped)}"
            for s in self.duplicates
        ]
        lines += [f"rejected: {r.where}: {r.reason}" for r in self.rejected]
        if self.new_ids:
            lines.append(
                f"new ids: {_counted(self.new_ids, 'row')} had an id already "
                "used by another token, and got a new one"
            )
        return lines

    def as_dict(self) -> dict:
        shown = dataclasses.asdict(self)
        shown["dropped"] = self.dropped
        return shown


def import_rows(
    conn: Connection,
    rows: Iterable[SourceRow],
    source: str,
    *,
    dry_run: bool = False,
    strict: bool = False,
    progress: Optional[Progress] = None,
) -> ImportReport:
    """Import rows into the token table on the caller's connection.

    The connection should be in a transaction: the caller commits.
    strict: refuse the whole import if any row would be rejected.
    progress: given the number of writes, a context yielding a callable
        that is told how many were made.
    """
    plan = plan_import(rows, core.read_records(conn), source, dry_run=dry_run)
    report = plan.report
    if strict and report.rejected:
        first = report.rejected[0]
        raise ImportRefused(
            f"{len(report.rejected)} of {report.read} rows cannot be imported "
            f"(first: {first.where}: {first.reason}); nothing was written"
        )
    if not dry_run:
        plan.write(conn, progress or _no_progress)
    return report


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def import_into(
    engine: Engine,
    rows: Iterable[SourceRow],
    source: str,
    **options,
) -> ImportReport:
    """``import_rows`` in a transaction of its own; the options are its."""
    rows = list(rows)
    try:
        with engine.begin() as conn:
            return import_rows(conn, rows, source, **options)
    except DBAPIError as err:
        # Each value a failing row could hold is blanked from the message.
        secrets = [v for row in rows for v in row.values.values() if v]
        message = (
            f"the import into {mask_url(engine.url)} failed and wrote "
            f"nothing: {dberrors.kind(err)}: {dberrors.describe(err, secrets)}"
        )
        dberrors.scrub(err, secrets)
        raise StoreDatabaseError(message) from err


def plan_import(
    rows: Iterable[SourceRow],
    stored: List[TokenRecord],
    source: str,
    *,
    dry_run: bool = False,
) -> "ImportPlan":
    """What importing the rows into a table holding ``stored`` would do."""
    rows = list(rows)
    report = ImportReport(source=source, read=len(rows), dry_run=dry_run)
    plan = ImportPlan(stored, report)
    plan.add_rows(rows)
    return plan


@contextlib.contextmanager
def _no_progress(_total: int):
    yield lambda _done: None


# -- the plan ------------------------------------------------------------------


@dataclasses.dataclass
class _Candidate:
    record: TokenRecord
    where: str
    order: Tuple


class ImportPlan:
    """The writes an import makes, decided against the stored rows.

    ``report`` says what they are; ``write`` makes them.
    """

    def __init__(self, stored: List[TokenRecord], report: ImportReport):
        self.report = report
        self.stored = _StoredIndex(stored)
        self.inserts: List[TokenRecord] = []
        self.overwrites: List[Tuple[str, TokenRecord]] = []

    def add_rows(self, rows: List[SourceRow]) -> None:
        candidates = [c for c in map(self._checked, rows) if c is not None]
        winners = self._settled(candidates)
        # Named rows first: a nameless row of the same authorization then
        # finds the named one by its refresh token, and keeps the name.
        winners.sort(key=lambda c: (c.record.user_name is None, c.order))
        for candidate in winners:
            self._decide(candidate)

    def _checked(self, row: SourceRow) -> Optional[_Candidate]:
        try:
            record = records.normalized(to_record(row))
        except (TypeError, ValueError) as err:
            self._reject(row.where, str(err))
            return None
        if not any(getattr(record, name) for name in records.TOKEN_FIELDS):
            self._reject(row.where, "it holds no token (access, refresh or grant)")
            return None
        return _Candidate(record, row.where, row.order)

    def _settled(self, candidates: List[_Candidate]) -> List[_Candidate]:
        groups: Dict[tuple, List[_Candidate]] = {}
        for candidate in candidates:
            groups.setdefault(_identity(candidate.record), []).append(candidate)
        winners = []
        for identity, group in groups.items():
            winner = max(group, key=_recency)
            winners.append(winner)
            if len(group) > 1:
                dropped = tuple(
                    c.where for c in sorted(group, key=_order) if c is not winner
                )
                self.report.duplicates.append(
                    Settled(_describe(identity), winner.where, dropped)
                )
        return winners

    def _decide(self, candidate: _Candidate) -> None:
        record = candidate.record
        target, conflict = self.stored.match(record)
        if conflict:
            self._reject(candidate.where, conflict)
        elif target is None:
            self._insert(record)
        else:
            self._update(target, record)

    def _insert(self, record: TokenRecord) -> None:
        if record.id is not None and self.stored.has_id(record.id):
            record = dataclasses.replace(record, id=None)
            self.report.new_ids += 1
        if record.id is None:
            record = dataclasses.replace(record, id=core.new_token_id())
        self.inserts.append(record)
        self.stored.add(record)
        self.report.imported += 1

    def _update(self, stored: TokenRecord, record: TokenRecord) -> None:
        if _carries_nothing_new(record, stored):
            self.report.unchanged += 1
        elif _expires_later(stored, record):
            self.report.kept_newer += 1
        else:
            # The stored row keeps its id; the record's own is dropped.
            record = dataclasses.replace(record, id=None)
            self.overwrites.append((stored.id, record))
            self.stored.replace(stored, record)
            self.report.updated += 1

    def _reject(self, where: str, reason: str) -> None:
        self.report.rejected.append(Rejected(where, reason))

    def write(self, conn: Connection, progress: Progress) -> None:
        with progress(len(self.inserts) + len(self.overwrites)) as advance:
            for start in range(0, len(self.inserts), INSERT_BATCH):
                batch = self.inserts[start : start + INSERT_BATCH]
                core.insert_records(conn, batch)
                advance(len(batch))
            for row_id, record in self.overwrites:
                core.overwrite_record(conn, row_id, record)
                advance(1)


def _identity(record: TokenRecord) -> tuple:
    """What makes two rows the same token: the table's unique key."""
    if record.user_name:
        return ("user", record.user_name, record.client_id, record.api_domain)
    for name in _NAMELESS_KEYS:
        value = getattr(record, name)
        if value:
            return (name, digest(value))
    raise AssertionError("a candidate always holds a token")


def _describe(identity: tuple) -> str:
    if identity[0] == "user":
        _, user, client, domain = identity
        return f"user {user}, client {client or '-'}, data centre {domain or '-'}"
    name, value = identity
    return f"no user name, {name.replace('_', ' ')} #{value[:6]}"


def _recency(candidate: _Candidate) -> tuple:
    expiry = candidate.record.expiry_time
    return (expiry if expiry is not None else -1, candidate.order)


def _order(candidate: _Candidate) -> tuple:
    return candidate.order


def _carries_nothing_new(record: TokenRecord, stored: TokenRecord) -> bool:
    # A field the import leaves empty keeps its stored value, as a save's.
    return all(
        getattr(record, name) is None or getattr(record, name) == getattr(stored, name)
        for name in _COMPARED
    )


def _expires_later(stored: TokenRecord, record: TokenRecord) -> bool:
    if stored.expiry_time is None:
        return False
    return record.expiry_time is None or record.expiry_time < stored.expiry_time


class _StoredIndex:
    """The table's rows by their keys, kept up to date with the plan."""

    def __init__(self, stored: List[TokenRecord]):
        self._by_id: Dict[str, TokenRecord] = {}
        self._by_user: Dict[tuple, str] = {}
        self._by_token: Dict[tuple, str] = {}
        for record in stored:  # oldest first: the newest of equals wins
            self.add(record)

    def has_id(self, token_id: str) -> bool:
        return token_id in self._by_id

    def add(self, record: TokenRecord) -> None:
        self._by_id[record.id] = record
        if record.user_name:
            self._by_user[_identity(record)] = record.id
        for name in _NAMELESS_KEYS:
            value = getattr(record, name)
            # Only refresh tokens are unique to a row; the others are used
            # to find rows that have no user name, as a lookup would.
            if value and (name == "refresh_token" or not record.user_name):
                self._by_token[(name, digest(value))] = record.id

    def replace(self, stored: TokenRecord, record: TokenRecord) -> None:
        known = {
            n: getattr(record, n) for n in _COMPARED if getattr(record, n) is not None
        }
        self.add(dataclasses.replace(stored, **known))

    def match(self, record: TokenRecord) -> Tuple[Optional[TokenRecord], Optional[str]]:
        """The stored row the record goes to, or why it cannot go anywhere."""
        by_user = self._by_user.get(_identity(record)) if record.user_name else None
        holder = self._holder("refresh_token", record.refresh_token)
        if holder is not None and holder.id != by_user:
            if by_user is not None or (record.user_name and holder.user_name):
                return None, (
                    "its refresh token is stored for another user or client "
                    f"(row {holder.id})"
                )
            return holder, None
        if by_user is not None:
            return self._by_id[by_user], None
        if record.user_name:
            return None, None
        for name in ("access_token", "grant_token"):
            found = self._holder(name, getattr(record, name))
            if found is not None and not found.user_name:
                return found, None
        return None, None

    def _holder(self, name: str, value: Optional[str]) -> Optional[TokenRecord]:
        if not value:
            return None
        row_id = self._by_token.get((name, digest(value)))
        return self._by_id.get(row_id) if row_id is not None else None
