"""Taking over the table of the SDK's DBStore, which is also ``oauthtoken``.

A database where the SDK's MySQL store ran holds a table of that name in
the SDK's shape (``sqlstore.sdkformats``): text ids and expiry times, no
unique keys, often several rows for one user. It is not altered in place:
its rows need settling one by one, and its key column, types and indexes
all differ from ours. Instead the table is moved aside, the migrations
create ours, and the rows are copied with the importer's rules
(``sqlstore.importing``: duplicates settled and reported, expiry text
turned into milliseconds). The SDK's table is kept, renamed, for the
operator to compare and drop; nothing is ever deleted from it.

The steps, all on one connection holding the schema lock:

1. rename ``oauthtoken`` to ``oauthtoken_sdk_adopting``;
2. run the migrations, which create ``oauthtoken`` at head;
3. copy the rows of ``oauthtoken_sdk_adopting`` into it;
4. rename ``oauthtoken_sdk_adopting`` to ``oauthtoken_sdk_backup``.

On PostgreSQL and SQLite the four are one transaction: a failure undoes
them all. MySQL and MariaDB commit around every DDL statement, so there an
interruption can leave any step half done, and a rerun takes it from
there: a table named ``oauthtoken_sdk_adopting`` means steps 2 to 4 are
still to do. The copy is idempotent, and MySQL commits the copy before it
runs step 4's rename, so the backup name only ever appears once every row
is in. A migration cut short leaves our table empty and without a
revision: it is dropped and made again.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection

from . import core, importing, migrate
from .errors import SchemaError
from .importing import ImportReport, Progress
from .model import TABLE_NAME
from .model import oauthtoken as table
from .sdkformats import TableShape, read_table, table_shape

ADOPTING_TABLE = f"{TABLE_NAME}_sdk_adopting"
"""The SDK's table while its rows are being copied."""
BACKUP_TABLE = f"{TABLE_NAME}_sdk_backup"
"""The SDK's table once they are, kept for the operator to drop."""


@dataclasses.dataclass
class AdoptionReport:
    """What taking over the SDK's table did, or would do."""

    copied: ImportReport
    shape: TableShape
    resumed: bool = False
    dry_run: bool = False
    backup_table: str = BACKUP_TABLE

    def lines(self) -> List[str]:
        done = "would take over" if self.dry_run else "took over"
        first = f"{done} the SDK DBStore's table {TABLE_NAME}"
        if self.resumed:
            first += " (finishing an adoption that was cut short)"
        lines = [first, self.copied.summary(), *self.copied.details()]
        if self.shape.extra:
            lines.append(
                f"columns not copied: {', '.join(self.shape.extra)} (the "
                f"backup table keeps them)"
            )
        if self.dry_run:
            lines.append("nothing was changed (dry run)")
        else:
            lines.append(
                f"the SDK's table is kept as {self.backup_table}, every row "
                "of it: drop it once the application runs on the new table"
            )
        return lines

    def as_dict(self) -> dict:
        return {
            "copied": self.copied.as_dict(),
            "columns_not_copied": list(self.shape.extra),
            "resumed": self.resumed,
            "dry_run": self.dry_run,
            "backup_table": self.backup_table,
        }


def is_pending(connection: Connection, revision: Optional[str]) -> bool:
    """Whether there is an SDK table to take over, or an adoption to finish.

    revision: the schema revision recorded in the database, if any.
    """
    if _has_table(connection, ADOPTING_TABLE):
        return True
    return revision is None and table_shape(connection, TABLE_NAME) is not None


def adopt(
    target: migrate.Target = None,
    *,
    dry_run: bool = False,
    progress: Optional[Progress] = None,
) -> AdoptionReport:
    """Take over the SDK's table, keeping rows of it that cannot be copied
    only in the backup table (``sqlstore adopt``)."""
    with migrate.locked(target, "adopt the SDK's table of") as (connection, shown):
        if not is_pending(connection, migrate.current(connection)):
            raise SchemaError(
                f"nothing to adopt in {shown}: it holds no table of the SDK's "
                f"DBStore named {TABLE_NAME}"
            )
        return adopt_on(connection, shown, dry_run=dry_run, progress=progress)


def adopt_on(
    connection: Connection,
    shown: str,
    *,
    strict: bool = False,
    dry_run: bool = False,
    progress: Optional[Progress] = None,
) -> AdoptionReport:
    """Take over the SDK's table on a connection holding the schema lock.

    strict: change nothing, and say why, if any row could not be copied
        or the table has columns the copy would leave behind; this is
        what ``sqlstore upgrade`` does.
    """
    resumed = _has_table(connection, ADOPTING_TABLE)
    source = ADOPTING_TABLE if resumed else TABLE_NAME
    shape = table_shape(connection, source)
    if shape is None:
        raise SchemaError(f"{shown}: {source} is not shaped like the SDK's table")
    if not resumed and _has_table(connection, BACKUP_TABLE):
        raise SchemaError(
            f"{shown} holds the SDK DBStore's {TABLE_NAME} table, but also "
            f"an earlier {BACKUP_TABLE}: rename or drop that one first"
        )
    rows = read_table(connection, source)
    described = f"the SDK's table {source}"
    if dry_run or (strict and not resumed):
        stored = _stored_records(connection) if resumed else []
        plan = importing.plan_import(rows, stored, described, dry_run=True)
        report = AdoptionReport(plan.report, shape, resumed, dry_run=True)
        if dry_run:
            return report
        _refuse_unless_complete(report, shown)

    if not resumed:
        _rename(connection, TABLE_NAME, ADOPTING_TABLE)
    _drop_cut_short_table(connection, shown)
    migrate.upgrade_on(connection)
    copied = importing.import_rows(connection, rows, described, progress=progress)
    # On MySQL this DDL commits the copy first: the backup name means done.
    _rename(connection, ADOPTING_TABLE, BACKUP_TABLE)
    return AdoptionReport(copied, shape, resumed)


def _refuse_unless_complete(report: AdoptionReport, shown: str) -> None:
    problems = []
    rejected = report.copied.rejected
    if rejected:
        first = rejected[0]
        problems.append(
            f"{len(rejected)} of its {report.copied.read} rows cannot be "
            f"copied (first: {first.where}: {first.reason})"
        )
    if report.shape.extra:
        problems.append(f"it has columns of its own ({', '.join(report.shape.extra)})")
    if problems:
        raise SchemaError(
            f"{shown} holds the SDK DBStore's {TABLE_NAME} table, but "
            f"{'; '.join(problems)}: nothing was changed. `sqlstore adopt "
            f"--dry-run` shows what would be copied, and `sqlstore adopt` "
            f"copies it, keeping the whole SDK table as {BACKUP_TABLE}"
        )


def _stored_records(connection: Connection) -> list:
    state = migrate.schema_state(connection)
    return core.read_records(connection) if state.is_current else []


def _drop_cut_short_table(connection: Connection, shown: str) -> None:
    """Drop our table if a migration left it half made, empty and unversioned."""
    if not _has_table(connection, TABLE_NAME):
        return
    if migrate.current(connection) is not None:
        return  # the migrations take it on from its revision
    columns = {c["name"] for c in inspect(connection).get_columns(TABLE_NAME)}
    ours = {"access_token_digest", "created_at"} <= columns
    empty = (
        ours
        and connection.execute(select(func.count()).select_from(table)).scalar() == 0
    )
    if not empty:
        raise SchemaError(
            f"{shown} holds both {ADOPTING_TABLE} and a {TABLE_NAME} table "
            "with rows but no revision recorded: compare them by hand"
        )
    _operations(connection).drop_table(TABLE_NAME)


def _rename(connection: Connection, old: str, new: str) -> None:
    _operations(connection).rename_table(old, new)


def _operations(connection: Connection) -> Operations:
    return Operations(MigrationContext.configure(connection))


def _has_table(connection: Connection, name: str) -> bool:
    # A new inspector each time: the tables change between the calls.
    return inspect(connection).has_table(name)
