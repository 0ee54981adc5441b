"""`sqlstore import` and `sqlstore export`, through the command itself.

Each command runs through Click's runner on ``sqlstore.cli.cli`` (one run
in a subprocess on a terminal, for the progress bar) against an empty
database of the test's own on SQLite, PostgreSQL and MariaDB. In-memory
SQLite is gone when a command's engine is, so there the same import and
export run through the Python functions the commands call.

The sources are written by the SDK itself: its FileStore writes the CSV
files, its DBStore the MySQL table (on MariaDB; on PostgreSQL and SQLite
the rows DBStore leaves go into a table of the SDK's DDL). Both stores
leave several rows for one user, which the import must settle.
"""

from __future__ import annotations

import csv
import json
import os
import pty
import select
import stat
import subprocess
import sys

import pytest
from commands import ok, sqlstore
from sandboxes import (
    ALL,
    DB_STORE_ROWS,
    EXPECTED,
    HOUR,
    LATER,
    PERSISTENT,
    SAVES,
    Saved,
    fill_file_store,
    fill_sdk_table,
    own_database,
)
from sqlalchemy import Column, MetaData, String, Table
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import migrate
from sqlstore.core import TokenRepository
from sqlstore.exporting import export_csv
from sqlstore.importing import import_into
from sqlstore.sdkformats import CSV_HEADER, OLDER_CSV_HEADERS, read_csv


@pytest.fixture(params=PERSISTENT)
def db(request, tmp_path):
    with own_database(request.param, tmp_path) as database:
        migrate.upgrade(database.engine)
        yield database


def stored(database) -> dict:
    return {r.user_name: r for r in TokenRepository(database.engine).all()}


def stored_access(database) -> dict:
    return {name: r.access_token for name, r in stored(database).items()}


def report(result) -> dict:
    return json.loads(result.stdout)


# -- the SDK's CSV file --------------------------------------------------------


def file_store_csv(tmp_path, saves=SAVES):
    """A file written by the SDK's FileStore, with a stale copy merged in."""
    path = tmp_path / "tokens.csv"
    fill_file_store(path, saves)
    # FileStore itself updates one user's row in place; rows for one user
    # pile up when files of two machines are merged. This one is older.
    with open(path, "a", newline="") as file:
        stale = SAVES[0]
        csv.writer(file).writerow(
            [
                "9",
                stale.user,
                stale.client_id,
                stale.client_secret,
                stale.refresh,
                "1000.ada-access-0",
                "",
                str(LATER - HOUR),
                "",
                stale.api_domain,
            ]
        )
    return path


def nine_column_csv(tmp_path, header) -> str:
    """The older family's file: no api_domain, user_mail for user_name."""
    path = tmp_path / "old-tokens.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for number, (_, save) in enumerate(DB_STORE_ROWS, start=1):
            writer.writerow(
                [
                    str(number),
                    save.user,
                    save.client_id,
                    save.client_secret,
                    save.refresh,
                    save.access,
                    "",
                    str(save.expiry),
                    "",
                ]
            )
    return path


def test_the_file_store_s_csv_imports_once(db, tmp_path):
    path = file_store_csv(tmp_path)
    with open(path) as file:
        assert next(csv.reader(file)) == list(CSV_HEADER)

    first = report(ok("import", "--url", db.url, "--csv", path, "--json"))
    second = report(ok("import", "--url", db.url, "--csv", path, "--json"))

    assert (first["read"], first["imported"], first["updated"]) == (5, 3, 0)
    assert len(first["duplicates"]) == 2 and first["dropped"] == 2
    assert first["rejected"] == []
    assert (second["imported"], second["updated"], second["unchanged"]) == (0, 0, 3)
    assert stored_access(db) == EXPECTED
    settled = {d["token"].split(",")[0]: d for d in first["duplicates"]}
    # ada: the line with the later expiry, not the later line.
    assert settled["user ada@example.com"]["kept"] == "line 2"
    assert settled["user eve@example.com"]["kept"] == "line 5"


@pytest.mark.parametrize("header", OLDER_CSV_HEADERS, ids=["user_mail", "user_name"])
def test_a_nine_column_csv_imports_without_a_data_centre(db, tmp_path, header):
    path = nine_column_csv(tmp_path, header)
    result = ok("import", "--url", db.url, "--csv", path)
    again = ok("import", "--url", db.url, "--csv", path)

    assert "9-column header" in result.stdout
    assert "3 imported, 0 updated" in result.stdout
    assert "2 duplicates settled" in result.stdout
    assert "0 imported, 0 updated, 3 unchanged" in again.stdout
    assert stored_access(db) == EXPECTED
    assert {r.api_domain for r in stored(db).values()} == {None}


def test_a_csv_the_sdk_did_not_write_is_refused_by_name(db, tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("name,token\nada,1000.x\n")
    result = sqlstore("import", "--url", db.url, "--csv", path)
    assert result.exit_code == 1
    assert (
        result.stderr.startswith("error: ")
        and "id,user_name,client_id" in result.stderr
    )
    assert stored(db) == {}


# -- the SDK's MySQL table -----------------------------------------------------


def test_the_db_store_s_table_imports_once(db):
    table = fill_sdk_table(db, "zoho_tokens")
    first = report(
        ok("import", "--url", db.url, "--db", db.url, "--table", table, "--json")
    )
    second = report(
        ok("import", "--url", db.url, "--db", db.url, "--table", table, "--json")
    )

    assert (first["read"], first["imported"], len(first["duplicates"])) == (5, 3, 2)
    assert (second["imported"], second["updated"], second["unchanged"]) == (0, 0, 3)
    assert stored_access(db) == EXPECTED
    kept = {
        d["token"].split(",")[0]: (d["kept"], d["dropped"]) for d in first["duplicates"]
    }
    assert kept["user ada@example.com"] == ("id 1", ["id 2"])
    assert kept["user eve@example.com"] == ("id 5", ["id 4"])
    # The SDK's ids are kept where they are free.
    assert {r.id for r in stored(db).values()} == {"1", "3", "5"}
    assert stored(db)["ada@example.com"].expiry_time == LATER + HOUR


def test_the_older_family_s_table_imports_too(db):
    """zcrmsdk's DBStore: user_mail for user_name, and no api_domain."""
    columns = [Column("id", String(10), primary_key=True)]
    columns += [
        Column(name, String(255))
        for name in ("user_mail", "client_id", "client_secret", "refresh_token",
                     "access_token", "grant_token")
    ]  # fmt: skip
    columns += [Column("expiry_time", String(20)), Column("redirect_url", String(255))]
    old = Table("zcrm_tokens", MetaData(), *columns)
    old.create(db.engine)
    with db.engine.begin() as conn:
        for token_id, save in DB_STORE_ROWS:
            conn.execute(
                old.insert().values(
                    id=token_id, user_mail=save.user, client_id=save.client_id,
                    client_secret=save.client_secret, refresh_token=save.refresh,
                    access_token=save.access, expiry_time=str(save.expiry),
                )
            )  # fmt: skip
    first = report(ok("import", "--url", db.url, "--db", db.url, "--table", old.name,
                      "--json"))  # fmt: skip
    assert (first["imported"], len(first["duplicates"])) == (3, 2)
    assert stored_access(db) == EXPECTED


def test_a_missing_source_table_is_named(db):
    result = sqlstore("import", "--url", db.url, "--db", db.url, "--table", "nope")
    assert result.exit_code == 1 and "has no table nope" in result.stderr
    bad = sqlstore("import", "--url", db.url, "--db", db.url, "--table", "x; drop")
    assert bad.exit_code == 1 and "letters, digits or underscores" in bad.stderr


def test_our_own_table_is_not_taken_for_the_sdk_s(db):
    result = sqlstore(
        "import", "--url", db.url, "--db", db.url, "--table", "oauthtoken"
    )
    assert result.exit_code == 1 and "not shaped like the SDK" in result.stderr


# -- what an import decides ----------------------------------------------------


def test_a_dry_run_reports_the_same_and_writes_nothing(db, tmp_path):
    path = file_store_csv(tmp_path)
    dry = report(ok("import", "--url", db.url, "--csv", path, "--dry-run", "--json"))
    assert stored(db) == {}
    real = report(ok("import", "--url", db.url, "--csv", path, "--json"))
    assert dry["dry_run"] and not real["dry_run"]
    dry.pop("dry_run"), real.pop("dry_run")
    assert dry == real


def test_bad_rows_are_reported_and_the_rest_imported(db, tmp_path):
    path = tmp_path / "mixed.csv"
    fill_file_store(path, SAVES[3:4])
    with open(path, "a", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["7", "x@example.com", "c", "s", "1000.r7", "1000.a7", "", "soon", "", ""]
        )
        writer.writerow(
            [
                "8",
                "y@example.com",
                "c",
                "s",
                "1000.r" + "8" * 3000,
                "1000.a8",
                "",
                "1",
                "",
                "",
            ]
        )
        writer.writerow(["9", "z@example.com", "c", "s", "", "", "", "", "", ""])
        writer.writerow(["10", "too", "few"])
    result = ok("import", "--url", db.url, "--csv", path)

    assert "1 imported," in result.stdout and "4 rejected" in result.stdout
    assert (
        "rejected: line 3: its expiry_time is not epoch milliseconds" in result.stdout
    )
    assert (
        "rejected: line 4: token field refresh_token is 3006 characters"
        in result.stdout
    )
    assert "rejected: line 5: it holds no token" in result.stdout
    assert "rejected: line 6: it has 3 fields, where the header has 10" in result.stdout
    assert "8888888888" not in result.output
    assert set(stored(db)) == {"bob@example.com"}


def test_strict_imports_nothing_when_a_row_is_bad(db, tmp_path):
    path = tmp_path / "strict.csv"
    fill_file_store(path, SAVES[3:4])
    with open(path, "a", newline="") as file:
        csv.writer(file).writerow(
            ["7", "x", "c", "s", "1000.r", "1000.a", "", "?", "", ""]
        )
    result = sqlstore("import", "--url", db.url, "--csv", path, "--strict")
    assert result.exit_code == 1
    assert "1 of 2 rows cannot be imported (first: line 3" in result.stderr
    assert "nothing was written" in result.stderr
    assert stored(db) == {}


def test_a_newer_stored_token_is_kept_and_an_older_one_updated(db, tmp_path):
    repository = TokenRepository(db.engine)
    ok("import", "--url", db.url, "--csv", file_store_csv(tmp_path))
    ada, bob = stored(db)["ada@example.com"], stored(db)["bob@example.com"]
    # Since the file was written: ada refreshed in the store, bob did not.
    ada.access_token, ada.expiry_time = "1000.ada-access-4", LATER + 2 * HOUR
    repository.save(ada)
    bob.access_token, bob.expiry_time = "1000.bob-access-0", LATER - 1
    repository.save(bob)

    again = report(
        ok("import", "--url", db.url, "--csv", tmp_path / "tokens.csv", "--json")
    )
    assert (again["kept_newer"], again["updated"], again["unchanged"]) == (1, 1, 1)
    after = stored(db)
    assert after["ada@example.com"].access_token == "1000.ada-access-4"
    assert after["bob@example.com"].access_token == "1000.bob-access-1"
    assert after["bob@example.com"].id == bob.id  # the stored row keeps its id


def test_an_id_another_token_holds_is_replaced_by_a_new_one(db, tmp_path):
    TokenRepository(db.engine).save(_someone_else("1"))
    path = tmp_path / "one.csv"
    fill_file_store(path, SAVES[3:4])  # FileStore numbers it 1
    result = report(ok("import", "--url", db.url, "--csv", path, "--json"))
    again = report(ok("import", "--url", db.url, "--csv", path, "--json"))

    assert (result["imported"], result["new_ids"]) == (1, 1)
    assert (again["imported"], again["unchanged"]) == (0, 1)
    rows = stored(db)
    assert rows["someone@example.com"].id == "1"
    assert rows["bob@example.com"].id != "1"


def _someone_else(token_id):
    from sqlstore.record import TokenRecord

    return TokenRecord(
        id=token_id,
        user_name="someone@example.com",
        refresh_token="1000.someone-refresh",
        expiry_time=LATER,
    )


def test_one_user_s_apps_and_data_centres_stay_apart(db, tmp_path):
    saves = [
        Saved("ada@example.com", "1000.a-us", "1000.r-us", LATER),
        Saved(
            "ada@example.com",
            "1000.a-eu",
            "1000.r-eu",
            LATER,
            api_domain="https://www.zohoapis.eu",
        ),
        Saved(
            "ada@example.com",
            "1000.a-app2",
            "1000.r-app2",
            LATER,
            client_id="1000.OTHERAPP",
        ),
    ]
    path = tmp_path / "apart.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_HEADER)
        for number, s in enumerate(saves, start=1):
            writer.writerow(
                [
                    number,
                    s.user,
                    s.client_id,
                    s.client_secret,
                    s.refresh,
                    s.access,
                    "",
                    s.expiry,
                    "",
                    s.api_domain,
                ]
            )
    result = report(ok("import", "--url", db.url, "--csv", path, "--json"))
    assert (result["imported"], result["duplicates"]) == (3, [])
    assert sorted(r.access_token for r in TokenRepository(db.engine).all()) == [
        "1000.a-app2",
        "1000.a-eu",
        "1000.a-us",
    ]


# -- export --------------------------------------------------------------------


def test_export_then_import_gives_back_the_same_rows(db, tmp_path):
    ok("import", "--url", db.url, "--csv", file_store_csv(tmp_path))
    out = tmp_path / "exported.csv"
    result = ok("export", "--url", db.url, out)

    assert "exported 3 tokens" in result.stdout
    assert result.stderr.startswith("warning: ") and "plain text" in result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    header, _ = read_csv(str(out))
    assert header == "10-column header"

    (tmp_path / "second").mkdir()
    with own_database(db.backend, tmp_path / "second") as other:
        migrate.upgrade(other.engine)
        ok("import", "--url", other.url, "--csv", out)
        assert _comparable(other) == _comparable(db)
        print(f"{len(_comparable(db))} rows round-tripped")


def _comparable(database):
    rows = [
        {k: v for k, v in vars(r).items() if k not in ("created_at", "updated_at")}
        for r in TokenRepository(database.engine).all()
    ]
    return sorted(rows, key=lambda row: row["id"])


def test_export_refuses_to_overwrite_without_force(db, tmp_path):
    out = tmp_path / "exported.csv"
    out.write_text("keep me")
    refused = sqlstore("export", "--url", db.url, out)
    assert refused.exit_code == 1 and "exists; pass --force" in refused.stderr
    assert out.read_text() == "keep me"
    ok("export", "--url", db.url, out, "--force")
    assert out.read_text().startswith("id,user_name")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".exported")]
    assert left == []  # no temporary file stays behind


def test_export_never_replaces_what_is_not_a_regular_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    ok("upgrade", "--url", url)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    target = tmp_path / "real.csv"
    target.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    for path in (fifo, link, "-"):
        refused = sqlstore("export", "--url", url, path, "--force")
        assert refused.exit_code == 1, path
        assert "regular file" in refused.stderr or "standard output" in refused.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.path.islink(link) and target.read_text() == "keep me"
    assert not os.path.exists("-")


def test_the_sdk_s_file_store_reads_and_extends_an_export(db, tmp_path):
    ok("import", "--url", db.url, "--csv", file_store_csv(tmp_path))
    out = tmp_path / "for-the-sdk.csv"
    ok("export", "--url", db.url, out, "--sdk-ids")
    store = FileStore(str(out))

    probe = OAuthToken(user_signature=UserSignature("ada@example.com"))
    found = store.find_token(probe)
    assert found is not None and found.get_access_token() == "1000.ada-access-3"
    assert found.get_expires_in() == str(LATER + HOUR)
    # The SDK numbers a new token max(id) + 1: it needs the numbered ids.
    store.save_token(Saved("new@example.com", "1000.n", "1000.nr", LATER).token())
    ids = [t.get_id() for t in store.get_tokens()]
    print(ids)
    assert ids == ["1", "2", "3", "4"]


# -- every backend, in-memory SQLite included ------------------------------------


@pytest.mark.parametrize("backend_name", ALL)
def test_the_import_and_export_functions_on_every_backend(backend_name, tmp_path):
    path = file_store_csv(tmp_path)
    with own_database(backend_name, tmp_path) as database:
        migrate.upgrade(database.engine)
        _, rows = read_csv(str(path))
        first = import_into(database.engine, rows, "file")
        second = import_into(database.engine, rows, "file")
        print(first.summary(), second.summary(), sep="\n")
        assert (first.imported, len(first.duplicates)) == (3, 2)
        assert (second.imported, second.updated, second.unchanged) == (0, 0, 3)
        assert stored_access(database) == EXPECTED
        assert export_csv(database.engine, str(tmp_path / "out.csv")) == 3
    _, exported = read_csv(str(tmp_path / "out.csv"))
    assert sorted(r.values["access_token"] for r in exported) == sorted(
        EXPECTED.values()
    )


# -- on a terminal -----------------------------------------------------------------


def test_a_progress_bar_shows_on_a_terminal_only(tmp_path):
    path = file_store_csv(tmp_path)
    piped, terminal = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db"))
    ok("upgrade", "--url", piped)
    ok("upgrade", "--url", terminal)

    quiet = ok("import", "--url", piped, "--csv", path)
    shown = _run_on_a_terminal(["import", "--url", terminal, "--csv", str(path)])
    print(shown)
    assert "importing" not in quiet.output and "%" not in quiet.output
    assert "importing" in shown and "100%" in shown
    assert "3 imported, 0 updated" in quiet.stdout and "3 imported, 0 updated" in shown


def _run_on_a_terminal(args) -> str:
    """The command with its stderr on a pseudo-terminal; what it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "sqlstore.cli", *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "SQLSTORE_DATABASE_URL"},
    )
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        seen += chunk
    out, _ = process.communicate(timeout=60)
    os.close(leader)
    assert process.returncode == 0, seen
    return out + seen.decode(errors="replace")


def test_a_field_past_csv_s_own_limit_rejects_its_row_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    ok("upgrade", "--url", url)
    path = tmp_path / "huge.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_HEADER)
        for number, refresh in enumerate(["x" * 200_000, "1000.refresh." + "c" * 60]):
            writer.writerow([
                str(number + 1), f"user{number}@example.com", "1000.CLIENT",
                "s" * 42, refresh, "1000.access." + "d" * 60, "",
                "1798761600000", "", "https://www.zohoapis.com",
            ])
    result = report(ok("import", "--url", url, "--csv", path, "--json"))
    print(result)
    assert result["imported"] == 1
    assert [r["where"] for r in result["rejected"]] == ["line 2"]
    assert "200000 characters" in result["rejected"][0]["reason"]
