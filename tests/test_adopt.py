"""Taking over the SDK DBStore's own ``oauthtoken`` table.

`sqlstore upgrade` and `sqlstore adopt` run through Click's runner (and,
for the concurrent case, as processes) on an empty database of each test's
own, SQLite file, PostgreSQL and MariaDB, holding the SDK's table: made
with the SDK's DDL, and filled by the SDK's DBStore on MariaDB (the only
database it talks to) or with the rows it leaves elsewhere, duplicates
included. In-memory SQLite runs the same steps through the Python API.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from commands import ok, sqlstore
from sandboxes import (
    ALL,
    EXPECTED,
    HOUR,
    LATER,
    PERSISTENT,
    create_sdk_table,
    fill_sdk_table,
    insert_sdk_rows,
    own_database,
    sdk_rows,
)
from sqlalchemy import inspect

from sqlstore import adopt, core, importing, migrate
from sqlstore.adopt import ADOPTING_TABLE, BACKUP_TABLE
from sqlstore.core import TokenRepository
from sqlstore.errors import SchemaError
from sqlstore.migrate import VERSION_TABLE

HEAD = migrate.head_revision()


@pytest.fixture(params=PERSISTENT)
def db(request, tmp_path):
    with own_database(request.param, tmp_path) as database:
        yield database


def tables(database) -> set:
    return set(inspect(database.engine).get_table_names())


def stored_access(database) -> dict:
    return {r.user_name: r.access_token for r in TokenRepository(database.engine).all()}


def assert_adopted(database, original_rows) -> None:
    """Our table at head holding the settled tokens; the SDK's kept whole."""
    print(f"tables: {sorted(tables(database))}")
    assert ADOPTING_TABLE not in tables(database)
    assert migrate.schema_state(database.engine).is_current
    # Constraints and indexes too: the table is exactly the model's.
    migrate.check(database.engine)
    assert stored_access(database) == EXPECTED
    ada = [r for r in TokenRepository(database.engine).all() if r.id == "1"]
    assert ada and ada[0].expiry_time == LATER + HOUR  # text became BIGINT ms
    assert sdk_rows(database.engine, BACKUP_TABLE) == original_rows


def test_upgrade_adopts_the_sdk_table_settling_its_duplicates(db):
    fill_sdk_table(db)
    original = sdk_rows(db.engine, "oauthtoken")
    before = ok("status", "--url", db.url)

    result = ok("upgrade", "--url", db.url)
    again = ok("upgrade", "--url", db.url)
    after = ok("status", "--url", db.url)

    assert "is the SDK DBStore's table (5 rows)" in before.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == "took over the SDK DBStore's table oauthtoken"
    assert "5 rows read; 3 imported, 0 updated" in lines[1]
    assert "2 duplicates settled (2 rows dropped); 0 rejected" in lines[1]
    assert "user ada@example.com" in lines[2] and "kept id 1, dropped id 2" in lines[2]
    assert "user eve@example.com" in lines[3] and "kept id 5, dropped id 4" in lines[3]
    assert f"kept as {BACKUP_TABLE}" in lines[4]
    assert lines[5].endswith(f"upgraded from empty to {HEAD}")
    assert again.stdout.strip().endswith(f"already at {HEAD}")
    assert "tokens: 3 (3 users)" in after.stdout
    assert f"{BACKUP_TABLE}: the SDK's table as it was" in after.stdout
    assert_adopted(db, original)


def test_upgrade_changes_nothing_when_a_row_cannot_be_copied(db):
    fill_sdk_table(db)
    bad = {**sdk_rows(db.engine, "oauthtoken")[0], "id": "6", "user_name": "x"}
    insert_sdk_rows(db.engine, [{**bad, "expiry_time": "tomorrow"}])
    original = sdk_rows(db.engine, "oauthtoken")

    refused = sqlstore("upgrade", "--url", db.url)
    assert refused.exit_code == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "1 of its 6 rows cannot be copied (first: id 6: its expiry_time" in (
        refused.stderr
    )
    assert "`sqlstore adopt --dry-run`" in refused.stderr
    assert sdk_rows(db.engine, "oauthtoken") == original
    assert tables(db) <= {"oauthtoken", VERSION_TABLE}

    dry = ok("adopt", "--url", db.url, "--dry-run")
    assert "rejected: id 6: its expiry_time is not epoch milliseconds" in dry.stdout
    assert "nothing was changed (dry run)" in dry.stdout
    assert sdk_rows(db.engine, "oauthtoken") == original

    done = ok("adopt", "--url", db.url)
    assert "3 imported," in done.stdout and "1 rejected" in done.stdout
    assert_adopted(db, original)


def test_adopt_says_when_there_is_nothing_to_adopt(db):
    ok("upgrade", "--url", db.url)
    result = sqlstore("adopt", "--url", db.url)
    assert result.exit_code == 1
    assert "nothing to adopt" in result.stderr


def test_an_earlier_backup_table_is_never_overwritten(db):
    fill_sdk_table(db)
    create_sdk_table(db.engine, BACKUP_TABLE)
    original = sdk_rows(db.engine, "oauthtoken")
    result = sqlstore("upgrade", "--url", db.url)
    assert result.exit_code == 1
    assert f"an earlier {BACKUP_TABLE}: rename or drop that one first" in result.stderr
    assert sdk_rows(db.engine, "oauthtoken") == original


# -- interrupted -------------------------------------------------------------------


class Stop(Exception):
    """The process dies here."""


def _stop_after_moving_aside(monkeypatch):
    def upgrade_on(connection, revision="head"):
        raise Stop()

    monkeypatch.setattr(migrate, "upgrade_on", upgrade_on)


def _stop_after_the_migrations(monkeypatch):
    real = migrate.upgrade_on

    def upgrade_on(connection, revision="head"):
        real(connection, revision)
        raise Stop()

    monkeypatch.setattr(migrate, "upgrade_on", upgrade_on)


def _stop_during_the_copy(monkeypatch):
    real = core.insert_records
    calls = []

    def insert_records(conn, batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise Stop()
        return real(conn, batch)

    monkeypatch.setattr(importing, "INSERT_BATCH", 1)
    monkeypatch.setattr(core, "insert_records", insert_records)


def _stop_before_the_last_rename(monkeypatch):
    real = adopt._rename

    def rename(connection, old, new):
        if new == BACKUP_TABLE:
            raise Stop()
        real(connection, old, new)

    monkeypatch.setattr(adopt, "_rename", rename)


STOPS = {
    "after moving the table aside": _stop_after_moving_aside,
    "after the migrations": _stop_after_the_migrations,
    "during the copy": _stop_during_the_copy,
    "before the last rename": _stop_before_the_last_rename,
}


@pytest.mark.parametrize("stop", STOPS)
def test_an_interrupted_adoption_loses_nothing_and_a_rerun_finishes(
    db, stop, monkeypatch
):
    fill_sdk_table(db)
    original = sdk_rows(db.engine, "oauthtoken")
    with monkeypatch.context() as patched:
        STOPS[stop](patched)
        with pytest.raises(Stop):
            migrate.upgrade(db.url)

    left = tables(db)
    print(f"{db.backend}, stopped {stop}: tables {sorted(left)}")
    holder = ADOPTING_TABLE if ADOPTING_TABLE in left else "oauthtoken"
    assert sdk_rows(db.engine, holder) == original
    if db.backend != "mariadb":
        # Transactional DDL: the interruption undid every step.
        assert left <= {"oauthtoken", VERSION_TABLE} and holder == "oauthtoken"

    rerun = ok("upgrade", "--url", db.url)
    resumed = "finishing an adoption that was cut short" in rerun.stdout
    print(f"rerun resumed: {resumed}")
    assert resumed == (holder == ADOPTING_TABLE)
    assert_adopted(db, original)


def test_a_rerun_after_the_copy_was_committed_changes_nothing(db):
    """MySQL commits the copy just before the last rename; a crash between."""
    fill_sdk_table(db)
    original = sdk_rows(db.engine, "oauthtoken")
    ok("upgrade", "--url", db.url)
    with db.engine.begin() as conn:
        adopt._rename(conn, BACKUP_TABLE, ADOPTING_TABLE)

    rerun = ok("upgrade", "--url", db.url)
    assert "finishing an adoption that was cut short" in rerun.stdout
    assert "0 imported, 0 updated, 3 unchanged" in rerun.stdout
    assert_adopted(db, original)


def test_a_migration_cut_short_beside_rows_is_left_for_a_person(db):
    fill_sdk_table(db)
    with db.engine.begin() as conn:
        adopt._rename(conn, "oauthtoken", ADOPTING_TABLE)
    create_sdk_table(db.engine, "oauthtoken")  # not ours: someone else's
    result = sqlstore("upgrade", "--url", db.url)
    assert result.exit_code == 1
    assert ADOPTING_TABLE in result.stderr


def test_upgrades_racing_on_the_sdk_table_adopt_it_once(db):
    fill_sdk_table(db)
    original = sdk_rows(db.engine, "oauthtoken")
    command = [sys.executable, "-m", "sqlstore.cli", "upgrade", "--url", db.url]
    racers = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [racer.communicate(timeout=180) for racer in racers]
    for racer, (out, err) in zip(racers, outputs):
        print(f"exit {racer.returncode}: {out.strip()} {err.strip()}")
        assert racer.returncode == 0, err
    adopted = [out for out, _ in outputs if "took over" in out]
    assert len(adopted) == 1
    assert_adopted(db, original)


@pytest.mark.parametrize("backend_name", ALL)
def test_the_adoption_through_the_python_api_on_every_backend(backend_name, tmp_path):
    with own_database(backend_name, tmp_path) as database:
        fill_sdk_table(database)
        original = sdk_rows(database.engine, "oauthtoken")
        change = migrate.upgrade_change(database.engine)
        print("\n".join(change.adoption.lines()))
        assert (change.before, change.after) == (None, HEAD)
        assert change.adoption.copied.imported == 3
        assert_adopted(database, original)
        with pytest.raises(SchemaError, match="nothing to adopt"):
            adopt.adopt(database.engine)
