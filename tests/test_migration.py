"""Moving between the SDK families without moving the tokens.

An application on an older SDK (this environment's, through
LegacySqlAlchemyStore) and one on the current SDK (another venv's
interpreter, named by ``SQLSTORE_CURRENT_SDK_PYTHON``, through
SqlAlchemyStore) share one database: each finds what the other saved, and
neither asks Zoho for a new grant. The two SDKs live in two environments,
so the two sides are two processes; an in-memory database cannot be shared
by two, so these run on the three backends that can
(test_legacy_contract.py shows the record round trip on all four).
"""

from __future__ import annotations

import functools
import os

import pytest
from legacysdk import legacy
from sdkrequire import legacy_required
from sqlalchemy import select, text

from sqlstore.model import oauthtoken
from sqlstore.scenario import run_in_new_interpreter
from sqlstore.standin import ZohoStandIn

PARTNER_VAR = "SQLSTORE_CURRENT_SDK_PYTHON"
SHAREABLE = ["sqlite-file", "postgresql", "mariadb"]

pytestmark = pytest.mark.e2e


@pytest.fixture
def partner_python() -> str:
    python = os.environ.get(PARTNER_VAR)
    if not python:
        message = f"{PARTNER_VAR} names no interpreter with the current SDK"
        if legacy_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return python


@pytest.fixture
def zoho(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with ZohoStandIn() as server:
        yield server


def stored(engine, user_name):
    columns = [oauthtoken.c[n] for n in ("id", "user_name", "refresh_token")]
    with engine.connect() as conn:
        rows = [row._asdict() for row in conn.execute(select(*columns))]
    return next(row for row in rows if row["user_name"].startswith(user_name))


def exchanges(zoho):
    counts = zoho.counts
    return counts["grant"], counts["refresh"]


@pytest.mark.parametrize("backend", SHAREABLE)
def test_tokens_move_between_the_families(backend, database_url, zoho, partner_python):
    common = dict(
        database_url=database_url,
        zoho_url=zoho.url,
        client_id=zoho.client_id,
        client_secret=zoho.client_secret,
    )
    older = functools.partial(
        run_in_new_interpreter, module="sqlstore.legacy_scenario", **common
    )
    current = functools.partial(run_in_new_interpreter, python=partner_python, **common)
    store = legacy.LegacySqlAlchemyStore(database_url)

    # Old to new: the current SDK is told the user's e-mail, the name the
    # older one saved the token under, or given the refresh token.
    saved_old = older(
        user_name="ada@example.com", grant_token=zoho.new_grant_token("ada@example.com")
    )
    ada = stored(store.engine, "ada@example.com")
    by_name = current(user_name="ada@example.com")
    by_refresh = current(refresh_token=ada["refresh_token"])
    print(f"old -> new: exchanges={exchanges(zoho)}")
    assert exchanges(zoho) == (1, 0)
    assert by_name.records == by_refresh.records == 2
    assert by_name.token_id == by_refresh.token_id == saved_old.token_id

    # New to old: the current SDK names the user e-mail:zgid; the older
    # one, configured with the refresh token, finds that row, refreshes it
    # after expiry, and leaves its name so that the current SDK still
    # finds it.
    current(grant_token=zoho.new_grant_token("bob@example.com"))
    bob = stored(store.engine, "bob@example.com")
    found_old = older(user_name="bob@example.com", refresh_token=bob["refresh_token"])
    assert exchanges(zoho) == (2, 0) and found_old.token_id == bob["id"]
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE oauthtoken SET expiry_time = 1000 WHERE id = :id"),
            {"id": bob["id"]},
        )
    zoho.expire_access_tokens()
    older(user_name="bob@example.com", refresh_token=bob["refresh_token"])
    after = stored(store.engine, "bob@example.com")
    back = current(user_name=zoho.user_name("bob@example.com"))
    print(f"new -> old -> new: exchanges={exchanges(zoho)} bob={after['user_name']}")
    assert exchanges(zoho) == (2, 1)
    assert after["user_name"] == zoho.user_name("bob@example.com").lower()
    assert back.records == 2 and back.token_id == bob["id"]
    assert len(store.get_tokens()) == 2
    store.close()
