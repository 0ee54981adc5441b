"""Moving an application's tokens from the SDK's stores to ours and back.

The real SDK runs against the Zoho stand-in: first with its own store (the
CSV FileStore, or the MySQL DBStore on MariaDB), which exchanges a grant
and saves the tokens. The tokens move with `sqlstore import` or
`sqlstore upgrade` (adoption), and then an application process using
``SqlAlchemyStore`` must go on with them without asking Zoho for anything:
no grant exchange and no refresh. `sqlstore export` takes them back to a
FileStore the same way.

Each backend a command can reach: SQLite file, PostgreSQL, MariaDB.
"""

from __future__ import annotations

import pytest
from commands import ok
from sandboxes import PERSISTENT, create_sdk_table, insert_sdk_rows, own_database
from sqlalchemy.engine import make_url
from zohocrmsdk.src.com.zoho.api.authenticator.store.db_store import DBStore
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore

from sqlstore import migrate
from sqlstore.scenario import run, run_in_new_interpreter
from sqlstore.sdkformats import read_csv
from sqlstore.standin import ZohoStandIn

EMAIL = "ada@example.com"

pytestmark = pytest.mark.e2e


@pytest.fixture
def zoho(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with ZohoStandIn() as server:
        yield server


@pytest.fixture(params=PERSISTENT)
def db(request, tmp_path):
    with own_database(request.param, tmp_path) as database:
        yield database


def credentials(zoho) -> dict:
    return dict(
        zoho_url=zoho.url, client_id=zoho.client_id, client_secret=zoho.client_secret
    )


def sdk_with_its_file_store(zoho, path):
    """The application as it was: the SDK's FileStore, one grant exchange."""
    outcome = run(
        None,
        **credentials(zoho),
        grant_token=zoho.new_grant_token(EMAIL),
        store=FileStore(str(path)),
    )
    assert outcome.records == 2
    return outcome


def exchanges(zoho) -> tuple:
    counts = zoho.counts
    return counts["grant"], counts["refresh"]


def test_tokens_imported_from_the_file_store_need_no_exchange(db, zoho, tmp_path):
    path = tmp_path / "sdk_tokens.csv"
    sdk_with_its_file_store(zoho, path)
    before = exchanges(zoho)
    migrate.upgrade(db.engine)
    ok("import", "--url", db.url, "--csv", path)

    outcome = run_in_new_interpreter(
        database_url=db.url, **credentials(zoho), user_name=zoho.user_name(EMAIL)
    )
    after = exchanges(zoho)
    print(f"exchanges (grant, refresh): with FileStore {before}, after {after}")
    assert before == (1, 0)
    assert outcome.records == 2 and after == before


def test_an_adopted_db_store_table_needs_no_exchange(db, zoho, tmp_path):
    create_sdk_table(db.engine)
    if db.backend == "mariadb":
        url = make_url(db.url)
        store = DBStore(
            host=url.host,
            database_name=url.database,
            user_name=url.username,
            password="",
            port_number=str(url.port),
        )
        run(
            None,
            **credentials(zoho),
            grant_token=zoho.new_grant_token(EMAIL),
            store=store,
        )
    else:
        # DBStore talks to MySQL only: the row it would write, from FileStore.
        sdk_with_its_file_store(zoho, tmp_path / "sdk.csv")
        _, rows = read_csv(str(tmp_path / "sdk.csv"))
        insert_sdk_rows(db.engine, [rows[0].values])
    before = exchanges(zoho)
    ok("upgrade", "--url", db.url)

    outcome = run_in_new_interpreter(
        database_url=db.url, **credentials(zoho), user_name=zoho.user_name(EMAIL)
    )
    after = exchanges(zoho)
    print(f"exchanges (grant, refresh): with the SDK's store {before}, after {after}")
    assert before == (1, 0)
    assert outcome.records == 2 and after == before


def test_exported_tokens_serve_the_sdk_s_file_store(db, zoho, tmp_path):
    migrate.upgrade(db.engine)
    run_in_new_interpreter(
        database_url=db.url,
        **credentials(zoho),
        grant_token=zoho.new_grant_token(EMAIL),
    )
    before = exchanges(zoho)
    out = tmp_path / "back.csv"
    ok("export", "--url", db.url, out, "--sdk-ids")

    outcome = run(
        None,
        **credentials(zoho),
        user_name=zoho.user_name(EMAIL),
        store=FileStore(str(out)),
    )
    after = exchanges(zoho)
    print(f"exchanges (grant, refresh): with sqlstore {before}, after {after}")
    assert outcome.records == 2 and after == before == (1, 0)
