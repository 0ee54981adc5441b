"""`sqlstore status`, `list`, `show`, `delete`, `purge` and `prune`.

Through Click's runner on ``sqlstore.cli.cli``, against an empty database
of each test's own (SQLite file, PostgreSQL, MariaDB: a command cannot
reach an in-memory database), holding tokens in each state the prune
policy tells apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import pytest
from commands import ok, runner, sqlstore
from sandboxes import PERSISTENT, create_sdk_table, own_database
from sqlalchemy import update

from sqlstore import migrate
from sqlstore.cli import cli
from sqlstore.core import TokenRepository
from sqlstore.model import oauthtoken
from sqlstore.record import TokenRecord

LATER = 4_102_444_800_000
PAST = 1_000_000_000_000  # 2001
# Whole values, which no output may show.
WHOLE_TOKEN = re.compile(r"1000\.(refresh|access|grant)-[a-z]+-[0-9a-f]{8}")


def token(name, refresh=True, access=True, expiry=LATER, grant=False, age=None):
    """A row, and how long ago it was last saved."""
    suffix = hashlib.sha256(name.encode()).hexdigest()[:8]
    record = TokenRecord(
        user_name=f"{name}@example.com",
        client_id="1000.OPSCLIENT",
        client_secret=f"ops-secret-{name}-{suffix}",
        refresh_token=f"1000.refresh-{name}-{suffix}" if refresh else None,
        access_token=f"1000.access-{name}-{suffix}" if access else None,
        grant_token=f"1000.grant-{name}-{suffix}" if grant else None,
        expiry_time=expiry if access else None,
    )
    return record, age


ROWS = {
    "alive": token("alive"),
    "expired": token("expired", expiry=PAST),  # refreshable: kept
    "dead": token("dead", refresh=False, expiry=PAST),
    "unexpired": token("unexpired", refresh=False),
    "unknown": token("unknown", refresh=False, expiry=None),
    "fresh-grant": token("freshgrant", refresh=False, access=False, grant=True),
    "old-grant": token(
        "oldgrant", refresh=False, access=False, grant=True, age=dt.timedelta(hours=2)
    ),
    "unused": token("unused", age=dt.timedelta(days=40)),
}


@pytest.fixture(params=PERSISTENT)
def db(request, tmp_path):
    with own_database(request.param, tmp_path) as database:
        migrate.upgrade(database.engine)
        repository = TokenRepository(database.engine)
        database.ids = {}
        for label, (record, age) in ROWS.items():
            database.ids[label] = repository.save(record)
            if age is not None:
                _age(database, database.ids[label], age)
        yield database


def _age(database, token_id, age) -> None:
    moment = dt.datetime.now(dt.timezone.utc) - age
    with database.engine.begin() as conn:
        conn.execute(
            update(oauthtoken)
            .where(oauthtoken.c.id == token_id)
            .values(updated_at=moment)
        )


def users(database) -> set:
    return {r.user_name.split("@")[0] for r in TokenRepository(database.engine).all()}


def assert_no_whole_secret(result) -> None:
    assert not WHOLE_TOKEN.search(result.output)
    assert "ops-secret-" not in result.output


# -- looking -----------------------------------------------------------------------


def test_status_counts_what_is_stored(db):
    result = ok("status", "--url", db.url)
    found = json.loads(ok("status", "--url", db.url, "--json").stdout)
    print(found)
    assert f"backend: {db.engine.dialect.name}" in result.stdout
    assert f"schema: at head {migrate.head_revision()}" in result.stdout
    assert "tokens: 8 (8 users)" in result.stdout
    assert "access tokens expired: 2" in result.stdout
    assert "tokens without a refresh token: 5 (5 users)" in result.stdout
    assert (found["tokens"], found["expired"], found["at_head"]) == (8, 2, True)


def test_status_of_a_database_without_the_table(tmp_path):
    (tmp_path / "empty.db").touch()  # an empty SQLite file: a database, no table
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = ok("status", "--url", url)
    assert "schema: no token table" in result.stdout
    assert "tokens:" not in result.stdout


def test_list_shows_every_token_with_secrets_masked(db):
    result = ok("list", "--url", db.url)
    rows = json.loads(ok("list", "--url", db.url, "--json").stdout)
    print(json.dumps(rows[0], indent=2))
    assert result.stdout.splitlines()[0].split() == [
        "id", "user_name", "client_id", "api_domain", "expires_at",
        "access_token", "refresh_token",
    ]  # fmt: skip
    assert result.stdout.strip().endswith("8 tokens")
    assert "(expired)" in result.stdout
    assert len(rows) == 8
    alive = next(r for r in rows if r["user_name"] == "alive@example.com")
    assert alive["refresh_token"].startswith("1000…(")  # four characters shown
    assert alive["client_secret"].startswith("ops-…(")
    assert alive["expired"] is False and alive["expiry_time"] == LATER
    assert_no_whole_secret(result)


def test_list_of_one_user(db):
    rows = json.loads(
        ok("list", "--url", db.url, "--user", " Alive@Example.COM", "--json").stdout
    )
    assert [r["id"] for r in rows] == [db.ids["alive"]]


def test_show_one_token(db):
    result = ok("show", "--url", db.url, db.ids["dead"])
    shown = json.loads(ok("show", "--url", db.url, db.ids["dead"], "--json").stdout)
    assert f"id: {db.ids['dead']}" in result.stdout
    assert "refresh_token: -" in result.stdout
    assert "expired: True" in result.stdout
    assert shown["user_name"] == "dead@example.com" and shown["expired"] is True
    assert_no_whole_secret(result)

    missing = sqlstore("show", "--url", db.url, "no-such-id")
    assert missing.exit_code == 1
    assert missing.stderr == "error: no token with id 'no-such-id'\n"


# -- removing ----------------------------------------------------------------------


def test_delete_one_token(db):
    gone = db.ids["alive"]
    result = ok("delete", "--url", db.url, gone)
    again = sqlstore("delete", "--url", db.url, gone)
    assert result.stdout == f"deleted token {gone}\n"
    assert again.exit_code == 1 and "nothing deleted" in again.stderr
    assert "alive" not in users(db) and len(users(db)) == 7


def test_purge_needs_yes(db):
    refused = sqlstore("purge", "--url", db.url)
    assert refused.exit_code == 1
    assert "purge deletes all 8 tokens" in refused.stderr and "--yes" in refused.stderr
    assert len(users(db)) == 8
    result = ok("purge", "--url", db.url, "--yes")
    assert result.stdout == "deleted 8 tokens\n"
    assert users(db) == set()


def test_prune_removes_what_cannot_be_used(db):
    dry = ok("prune", "--url", db.url, "--dry-run")
    assert len(users(db)) == 8
    result = json.loads(ok("prune", "--url", db.url, "--json").stdout)
    again = ok("prune", "--url", db.url)

    print(dry.stdout)
    assert "would delete 2 tokens (dry run)" in dry.stdout
    assert {r["id"] for r in result["selected"]} == {
        db.ids["dead"],
        db.ids["old-grant"],
    }
    assert result["deleted"] == 2
    assert users(db) == {"alive", "expired", "unexpired", "unknown", "freshgrant",
                         "unused"}  # fmt: skip
    assert again.stdout == "deleted 0 tokens\n"


def test_prune_by_age(db):
    dry = ok("prune", "--url", db.url, "--unused-days", "30", "--dry-run")
    assert f"{db.ids['unused']}  unused@example.com  not saved for 30 days" in (
        dry.stdout
    )
    ok("prune", "--url", db.url, "--unused-days", "30")
    assert "unused" not in users(db) and len(users(db)) == 5
    refused = sqlstore("prune", "--url", db.url, "--unused-days", "-1")
    assert refused.exit_code == 2  # a usage error, as Click reports them


# -- where the commands cannot work --------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["show", "x"],
        ["delete", "x"],
        ["purge", "--yes"],
        ["prune"],
        ["export", "out.csv"],
    ],  # fmt: skip
    ids=lambda c: c[0],
)
def test_commands_say_when_the_table_is_not_ready(tmp_path, command):
    (tmp_path / "empty.db").touch()
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    missing = sqlstore(*command, "--url", empty)
    with own_database("sqlite-file", tmp_path) as database:
        create_sdk_table(database.engine)
        sdk = sqlstore(*command, "--url", database.url)
    assert missing.exit_code == 1 and "run `sqlstore upgrade`" in missing.stderr
    assert sdk.exit_code == 1
    assert "it is the SDK DBStore's table: `sqlstore upgrade` adopts it" in sdk.stderr
    assert not (tmp_path / "out.csv").exists()


def test_an_in_memory_database_is_refused(tmp_path):
    result = sqlstore("list", "--url", "sqlite://")
    assert result.exit_code == 1 and "in-memory database" in result.stderr


def test_the_url_comes_from_the_environment(db):
    result = runner().invoke(cli, ["status"], env={"SQLSTORE_DATABASE_URL": db.url})
    print(result.output)
    assert result.exit_code == 0 and "tokens: 8 (8 users)" in result.stdout
