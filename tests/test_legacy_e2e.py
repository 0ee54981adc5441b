"""An older SDK's whole token lifecycle, unmodified, against the stand-in.

As in test_e2e.py, each step is a new application process, except on
in-memory SQLite, where the steps share this process and one store.
"""

from __future__ import annotations

import functools

import pytest
from legacysdk import legacy
from sqlalchemy import select, text

from sqlstore import legacy_scenario
from sqlstore.model import oauthtoken
from sqlstore.scenario import run_in_new_interpreter
from sqlstore.sdkversions import LEGACY, crm_api_version
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
        columns = [oauthtoken.c[name] for name in ROW_FIELDS]
        return [row._asdict() for row in conn.execute(select(*columns))]


def test_grant_reuse_and_refresh_across_processes(backend, database_url, zoho):
    store = legacy.LegacySqlAlchemyStore(database_url)
    common = dict(
        database_url=database_url,
        zoho_url=zoho.url,
        client_id=zoho.client_id,
        client_secret=zoho.client_secret,
        user_name=EMAIL,
    )
    if backend == "sqlite-memory":
        launch = functools.partial(legacy_scenario.run, **common, store=store)
    else:
        launch = functools.partial(
            run_in_new_interpreter, module="sqlstore.legacy_scenario", **common
        )

    grant = zoho.new_grant_token(EMAIL)
    first = launch(grant_token=grant)
    rows = stored_rows(store)
    print(f"after grant: counts={zoho.counts} rows={len(rows)}")
    assert (zoho.counts["grant"], zoho.counts["refresh"]) == (1, 0)
    assert first.records == 2 and len(rows) == 1
    assert rows[0]["user_name"] == EMAIL and first.token_id == rows[0]["id"]

    # An application restarted with the same settings, and one configured
    # with the refresh token instead; the 2.x SDKs also find a token by id.
    reused = [launch(grant_token=grant), launch(refresh_token=rows[0]["refresh_token"])]
    if legacy.TokenType is None:
        reused.append(launch(token_id=first.token_id))
    print(f"after {len(reused)} reuses: counts={zoho.counts}")
    assert (zoho.counts["grant"], zoho.counts["refresh"]) == (1, 0)
    assert all(run.records == 2 for run in reused)
    assert {run.token_id for run in reused} == {first.token_id}
    assert len(stored_rows(store)) == 1

    # Past expiry, both in the row and at Zoho: only a refresh can go on.
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE oauthtoken SET expiry_time = 1000"))
    zoho.expire_access_tokens()
    refreshed = launch(grant_token=grant)
    after = stored_rows(store)
    print(f"after expiry: counts={zoho.counts} rows={len(after)}")
    print(f"CRM calls per API version: {zoho.crm_versions}")
    assert (zoho.counts["grant"], zoho.counts["refresh"]) == (1, 1)
    assert refreshed.records == 2 and len(after) == 1
    assert after[0]["access_token"] != rows[0]["access_token"]
    assert after[0]["refresh_token"] == rows[0]["refresh_token"]
    assert after[0]["expiry_time"] > 1000
    assert set(zoho.crm_versions) == {crm_api_version(LEGACY)}
    store.close()
