"""The SDK's whole token lifecycle, unmodified, against the Zoho stand-in.

Each step is a new application process (a fresh interpreter), except on
in-memory SQLite, whose database only the process that made it can reach:
there the steps run one after another in this process on one store.
"""

from __future__ import annotations

import functools

import pytest
from sqlalchemy import select, text

from sqlstore import SqlAlchemyStore
from sqlstore.model import oauthtoken
from sqlstore.scenario import run, run_in_new_interpreter
from sqlstore.sdkversions import crm_api_version, sdk_names_users
from sqlstore.standin import ZohoStandIn

EMAIL = "ada@example.com"
ROW_FIELDS = ("id", "user_name", "access_token", "refresh_token", "expiry_time")

pytestmark = pytest.mark.e2e


@pytest.fixture
def zoho(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with ZohoStandIn() as server:
        yield server


def stored_rows(store):
    with store.engine.connect() as conn:
        # Through the table's types: raw SQL would see MySQL's VARBINARY
        # keys as bytes.
        columns = [oauthtoken.c[name] for name in ROW_FIELDS]
        return [row._asdict() for row in conn.execute(select(*columns))]


def test_grant_reuse_and_refresh_across_processes(backend, database_url, zoho):
    store = SqlAlchemyStore(database_url)
    common = dict(
        database_url=database_url,
        zoho_url=zoho.url,
        client_id=zoho.client_id,
        client_secret=zoho.client_secret,
    )
    if backend == "sqlite-memory":
        launch = functools.partial(run, **common, store=store)
    else:
        launch = functools.partial(run_in_new_interpreter, **common)

    if sdk_names_users():
        user_name, named_by_app = zoho.user_name(EMAIL), None
    else:
        # zohocrmsdk5-0 keeps a token under the name the application gives.
        user_name = named_by_app = EMAIL
    first = launch(grant_token=zoho.new_grant_token(EMAIL), user_name=named_by_app)
    after_grant = zoho.counts
    rows = stored_rows(store)
    print(f"after grant: counts={after_grant} rows={len(rows)}")
    assert (after_grant["grant"], after_grant["refresh"]) == (1, 0)
    assert first.records == 2 and len(rows) == 1
    assert rows[0]["user_name"] == user_name.lower()
    assert first.token_id == rows[0]["id"]

    by_user = launch(user_name=user_name)
    by_refresh = launch(refresh_token=rows[0]["refresh_token"])
    reused = zoho.counts
    print(f"after reuse: counts={reused} rows={len(stored_rows(store))}")
    assert (reused["grant"], reused["refresh"]) == (1, 0)
    assert by_user.records == by_refresh.records == 2
    assert by_user.token_id == by_refresh.token_id == first.token_id

    # Past expiry, both in the row and at Zoho: only a refresh can go on.
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE oauthtoken SET expiry_time = 1000"))
    zoho.expire_access_tokens()
    refreshed = launch(user_name=user_name)
    final = zoho.counts
    after = stored_rows(store)
    print(f"after expiry: counts={final} rows={len(after)}")
    print(f"CRM calls per API version: {zoho.crm_versions}")
    assert set(zoho.crm_versions) == {crm_api_version()}
    assert (final["grant"], final["refresh"]) == (1, 1)
    assert refreshed.records == 2 and len(after) == 1
    assert after[0]["access_token"] != rows[0]["access_token"]
    assert after[0]["refresh_token"] == rows[0]["refresh_token"]
    assert after[0]["expiry_time"] > 1000
    store.close()
