"""No secret in anything the operator commands print or log.

As in ``test_hygiene``: every logger at DEBUG into one handler, warnings
recorded, stdout and stderr captured at the file-descriptor level, and the
output of each command (run with ``-v`` through Click's runner) added;
then all of it is searched for any 16 characters in a row of the known
token values, client secret and password. The tokens go in through every
way in: saved by the store, imported from a CSV file holding rows the
import rejects, and adopted from an SDK table.
"""

from __future__ import annotations

import csv
import sys

import pytest
from commands import runner
from sandboxes import PERSISTENT, create_sdk_table, insert_sdk_rows, own_database
from sqlalchemy.engine import make_url
from test_hygiene import (
    ACCESS,
    CLIENT,
    GRANT,
    REFRESH,
    SECRET,
    USER,
    assert_clean,
    everything_captured,
    known_token,
    leaks,
)

from sqlstore import SqlAlchemyStore, migrate
from sqlstore.cli import cli
from sqlstore.sdkformats import CSV_HEADER

# Rows that are refused, each holding the known values.
BAD_ROWS = [
    ["21", "bad1@example.com", CLIENT, SECRET, REFRESH + "x" * 3000, ACCESS, GRANT,
     "1767225600000", "", ""],
    ["22", "bad2@example.com", CLIENT, SECRET, REFRESH + "\x00", ACCESS, "", "1",
     "", ""],
    ["23", "bad3@example.com", CLIENT, SECRET, REFRESH, ACCESS, "", ACCESS, "", ""],
    ["24", USER, CLIENT, SECRET],
]  # fmt: skip
if sys.version_info < (3, 11):
    # csv before 3.11 refuses a file with a NUL anywhere, before any row.
    BAD_ROWS = [row for row in BAD_ROWS if "\x00" not in "".join(row)]


@pytest.fixture(params=PERSISTENT)
def db(request, tmp_path):
    with own_database(request.param, tmp_path) as database:
        yield database


class Commands:
    """Runs commands, keeping what they print for the search."""

    def __init__(self, captured):
        self.captured = captured
        self.count = 0

    def __call__(self, *args, status=0):
        result = runner().invoke(
            cli, ["-v", *map(str, args)], env={"SQLSTORE_DATABASE_URL": None}
        )
        self.count += 1
        name = " ".join(map(str, args[:1]))
        self.captured.texts += [
            (f"stdout of {name}", result.stdout),
            (f"stderr of {name}", result.stderr),
        ]
        if result.exception is not None and not isinstance(
            result.exception, SystemExit
        ):
            self.captured.exception(result.exception)
        print(f"$ sqlstore {name} -> {result.exit_code}: {result.stderr.strip()[:200]}")
        assert result.exit_code == status, (args, result.stdout + result.stderr)
        if status == 1:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return result


def csv_file(path) -> str:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_HEADER)
        # Expiring after the stored token, so that the import updates it.
        writer.writerow(["20", USER, CLIENT, SECRET, REFRESH, ACCESS, GRANT,
                         "4102444860000", "https://app.example.com/cb",
                         "https://www.zohoapis.com"])  # fmt: skip
        writer.writerows(BAD_ROWS)
    return str(path)


def read_only(database) -> str:
    """The database's URL, with every write refused (a replica, say)."""
    url = make_url(database.url)
    if database.backend == "sqlite-file":
        return f"sqlite:///file:{url.database}?mode=ro&uri=true"
    if database.backend == "postgresql":
        options = url.query["options"] + " -c default_transaction_read_only=on"
        url = url.update_query_dict({"options": options})
    else:
        url = url.update_query_dict(
            {"init_command": "SET SESSION TRANSACTION READ ONLY"}
        )
    return url.render_as_string(hide_password=False)


def test_the_operator_commands_let_out_no_secret(db, tmp_path, capfd):
    migrate.upgrade(db.engine)
    store = SqlAlchemyStore(db.url)
    token = known_token()
    store.save_token(token)
    store.close()
    source = csv_file(tmp_path / "known.csv")
    out = tmp_path / "export.csv"

    with everything_captured(capfd) as captured:
        run = Commands(captured)
        run("status", "--url", db.url)
        run("status", "--url", db.url, "--json")
        run("list", "--url", db.url)
        run("list", "--url", db.url, "--json")
        run("show", "--url", db.url, token.get_id())
        run("show", "--url", db.url, token.get_id(), "--json")
        run("import", "--url", db.url, "--csv", source, "--dry-run")
        # The stored row differs from the file's: the write is refused.
        run("import", "--url", read_only(db), "--csv", source, status=1)
        run("import", "--url", db.url, "--csv", source, "--json")
        run("import", "--url", db.url, "--csv", source, "--strict", status=1)
        run("export", "--url", db.url, out)
        run("prune", "--url", db.url, "--unused-days", "0", "--dry-run")
        run("prune", "--url", db.url, "--unused-days", "0", "--json")
        run("delete", "--url", db.url, token.get_id(), status=1)  # pruned
        run("purge", "--url", db.url, status=1)
        run("purge", "--url", db.url, "--yes")
    print(f"{run.count} commands")
    assert_clean(captured)
    # The export does hold them: the search would have found them there.
    assert leaks([out.read_text()])


def test_adopting_lets_out_no_secret(db, capfd):
    create_sdk_table(db.engine)
    good = dict(
        id="1", user_name=USER, client_id=CLIENT, client_secret=SECRET,
        refresh_token=REFRESH, access_token=ACCESS, grant_token=GRANT,
        expiry_time="1767225600000", redirect_url=None, api_domain=None,
    )  # fmt: skip
    insert_sdk_rows(db.engine, [good, {**good, "id": "2", "expiry_time": ACCESS[:20]}])

    with everything_captured(capfd) as captured:
        run = Commands(captured)
        run("status", "--url", db.url)
        run("upgrade", "--url", db.url, status=1)  # row 2 cannot be copied
        run("adopt", "--url", db.url, "--dry-run")
        run("adopt", "--url", db.url, "--json")
        run("list", "--url", db.url)
    print(f"{run.count} commands")
    assert_clean(captured)
