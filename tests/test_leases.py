"""Refresh leases and grant claims, call by call, on every backend.

Workers are threads sharing one store here (in-memory SQLite is one
process); whole SDK processes meeting at once are in test_lease_workers.
Each test that waits prints how long it did; none asserts a time.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.pool import StaticPool
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import (
    ConfigurationError,
    EngineOptions,
    SqlAlchemyStore,
    TokenStoreError,
    migrate,
)
from sqlstore.dbclock import database_now_ms
from sqlstore.lease import EDGE_MS, SDK_REFRESH_MARGIN_MS, ms_until_refresh
from sqlstore.model import oauthtoken as table
from sqlstore.model import oauthtoken_claim as claims
from sqlstore.record import TokenRecord, digest

CLIENT = "1000.LEASECLIENT"
SECRET = "client-secret-" + "l" * 28
USER = "lease@example.com:7000001"
HOUR_MS = 3_600_000


def new_value(kind: str) -> str:
    return f"1000.{kind}.{secrets.token_hex(16)}"


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def make_store(database_url):
    """Stores on the test's database with lease options of the test's."""
    made = []

    def make(**options) -> SqlAlchemyStore:
        store = SqlAlchemyStore(database_url, options=EngineOptions(**options))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def saved_token(store, expires_in: int, user: str = USER) -> OAuthToken:
    token = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        refresh_token=new_value("refresh"),
        access_token=new_value("access"),
        user_signature=UserSignature(user),
    )
    token.set_expires_in(str(expires_in))
    store.save_token(token)
    return token


def refresh_of(token: OAuthToken) -> OAuthToken:
    """What the SDK saves after a refresh: the row's id, a new token."""
    fresh = OAuthToken(id=token.get_id(), access_token=new_value("access"))
    fresh.set_expires_in(str(now_ms() + HOUR_MS))
    return fresh


def lease_of(store, token_id: str):
    """(owner, milliseconds the lease has left on the database's clock)."""
    columns = (table.c.lease_owner, table.c.lease_until - database_now_ms())
    with store.engine.connect() as conn:
        return conn.execute(select(*columns).where(table.c.id == token_id)).one()


def claim_of(store, grant: str):
    columns = (claims.c.lease_owner, claims.c.lease_until - database_now_ms())
    where = claims.c.grant_token_digest == digest(grant)
    with store.engine.connect() as conn:
        return conn.execute(select(*columns).where(where)).first()


def grant_probe(grant: str) -> OAuthToken:
    return OAuthToken(client_id=CLIENT, client_secret=SECRET, grant_token=grant)


def in_thread(call, *args):
    """Start call(*args) in a thread of its own; .result() waits for it."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(call, *args)
    pool.shutdown(wait=False)
    return future


def wait_until(condition, seconds: float = 30.0) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < give_up, "the condition never came true"
        time.sleep(0.01)


# -- when the SDK will refresh -------------------------------------------------

NOW = 1_800_000_000_000


def record(access="1000.a", expiry=None, refresh="1000.r", grant=None):
    return TokenRecord(
        id="row",
        access_token=access,
        expiry_time=expiry,
        refresh_token=refresh,
        grant_token=grant,
    )


@pytest.mark.parametrize(
    "found, expected",
    [
        # The SDK: refresh when expires_in - now < 5000 ms.
        (record(expiry=NOW + SDK_REFRESH_MARGIN_MS - 1), 0),
        (record(expiry=NOW - HOUR_MS), 0),
        # Just outside the margin: the store waits that long, then leases.
        (record(expiry=NOW + SDK_REFRESH_MARGIN_MS), 1),
        (record(expiry=NOW + SDK_REFRESH_MARGIN_MS + EDGE_MS - 1), EDGE_MS),
        (record(expiry=NOW + SDK_REFRESH_MARGIN_MS + EDGE_MS), None),
        (record(expiry=NOW + HOUR_MS), None),
        # No expiry: the SDK never refreshes it.
        (record(expiry=None), None),
        # No access token: the SDK exchanges the refresh or grant token.
        (record(access=None), 0),
        (record(access=None, refresh=None, grant="1000.g"), 0),
        (record(access=None, refresh=None), None),
    ],
)
def test_the_store_s_rule_is_the_sdk_s(found, expected):
    assert ms_until_refresh(found, now_ms=NOW) == expected


def test_a_token_of_the_caller_s_own_decides_instead_of_the_row():
    found = record(expiry=NOW - HOUR_MS)
    own_expiry = TokenRecord(expiry_time=NOW + HOUR_MS)
    own_access = TokenRecord(access_token="1000.other")
    same_access = TokenRecord(access_token="1000.a")
    assert ms_until_refresh(found, own_expiry, now_ms=NOW) is None
    assert ms_until_refresh(found, own_access, now_ms=NOW) is None
    assert ms_until_refresh(found, same_access, now_ms=NOW) == 0


@pytest.mark.parametrize(
    "name, value",
    [
        ("lease_seconds", 0),
        ("lease_seconds", -1),
        ("lease_seconds", math.nan),
        ("lease_seconds", "10"),
        ("lease_wait", -0.5),
        ("lease_wait", math.inf),
        ("lease_wait", True),
    ],
)
def test_lease_options_out_of_range_are_refused_by_name(name, value):
    with pytest.raises(ConfigurationError, match=f"EngineOptions.{name} must be"):
        SqlAlchemyStore("sqlite://", options=EngineOptions(**{name: value}))


def test_the_database_clock_is_epoch_milliseconds(store):
    # A time zone or unit mistake would be hours or a factor 1000 off.
    with store.engine.connect() as conn:
        database = conn.execute(select(database_now_ms())).scalar()
    print(f"database clock - this host's: {database - now_ms()} ms")
    assert abs(database - now_ms()) < 60_000


# -- refresh leases --------------------------------------------------------------


def test_a_fresh_token_costs_no_statement_beyond_the_lookup(make_store, monkeypatch):
    store = make_store()
    token = saved_token(store, now_ms() + HOUR_MS)
    ran = []
    for name in ("run_rows", "run_rowcount"):
        original = getattr(store.repository, name)
        monkeypatch.setattr(
            store.repository,
            name,
            lambda *a, _original=original: ran.append(a[0]) or _original(*a),
        )
    probe = OAuthToken(user_signature=UserSignature(USER))
    assert store.find_token(probe).get_access_token() == token.get_access_token()
    assert store.find_token_by_id(token.get_id()) is not None
    assert ran == []
    assert lease_of(store, token.get_id()).lease_owner is None


def test_the_first_finder_of_an_expiring_token_holds_the_lease(make_store):
    store = make_store(lease_seconds=30)
    token = saved_token(store, now_ms() - 1000)
    found = store.find_token_by_id(token.get_id())
    # Handed back as it is: the caller's SDK refreshes it.
    assert found.get_access_token() == token.get_access_token()
    owner, left_ms = lease_of(store, token.get_id())
    print(f"lease owner {owner}, {left_ms} ms left of 30000")
    assert len(owner) == 36 and 0 < left_ms <= 30_000


def test_find_token_leases_too_and_fills_the_caller_s_object(make_store):
    store = make_store()
    token = saved_token(store, now_ms() - 1000)
    probe = OAuthToken(user_signature=UserSignature(USER))
    assert store.find_token(probe) is probe
    assert probe.get_access_token() == token.get_access_token()
    assert lease_of(store, token.get_id()).lease_owner is not None


def test_a_waiter_gets_the_token_the_holder_saves(make_store):
    store = make_store(lease_seconds=30, lease_wait=30)
    token = saved_token(store, now_ms() - 1000)
    store.find_token_by_id(token.get_id())  # this thread holds the lease
    started = time.monotonic()
    waiter = in_thread(store.find_token_by_id, token.get_id())
    time.sleep(0.2)
    assert not waiter.done()
    fresh = refresh_of(token)
    store.save_token(fresh)
    got = waiter.result(timeout=30)
    print(f"the waiter had the new token {time.monotonic() - started:.2f} s on")
    assert got.get_access_token() == fresh.get_access_token()
    assert got.get_expires_in() == fresh.get_expires_in()
    # The save ended the lease.
    assert tuple(lease_of(store, token.get_id())) == (None, None)


def test_a_waiter_by_user_name_gets_the_new_token_filled_in(make_store):
    store = make_store(lease_wait=30)
    token = saved_token(store, now_ms() - 1000)
    store.find_token(OAuthToken(user_signature=UserSignature(USER)))
    probe = OAuthToken(user_signature=UserSignature(USER))
    waiter = in_thread(store.find_token, probe)
    time.sleep(0.2)
    fresh = refresh_of(token)
    store.save_token(fresh)
    assert waiter.result(timeout=30) is probe
    assert probe.get_access_token() == fresh.get_access_token()


def test_a_dead_holder_s_lease_is_taken_over_when_it_expires(make_store):
    store = make_store(lease_seconds=0.5, lease_wait=30)
    token = saved_token(store, now_ms() - 1000)
    store.find_token_by_id(token.get_id())  # a holder that never saves
    first_owner = lease_of(store, token.get_id()).lease_owner
    started = time.monotonic()
    got = in_thread(store.find_token_by_id, token.get_id()).result(timeout=30)
    waited = time.monotonic() - started
    owner, left_ms = lease_of(store, token.get_id())
    print(f"taken over after {waited:.2f} s (lease 0.5 s); {left_ms} ms left")
    # The waiter is the holder now, and refreshes the token it was handed.
    assert got.get_access_token() == token.get_access_token()
    assert owner is not None and owner != first_owner and left_ms > 0


def test_a_thread_that_looks_again_is_not_made_to_wait_for_itself(make_store):
    store = make_store(lease_seconds=30, lease_wait=30)
    token = saved_token(store, now_ms() - 1000)
    store.find_token_by_id(token.get_id())
    first_owner = lease_of(store, token.get_id()).lease_owner
    started = time.monotonic()
    store.find_token_by_id(token.get_id())  # its refresh failed; it tries again
    print(f"the second lookup took {time.monotonic() - started:.3f} s")
    assert lease_of(store, token.get_id()).lease_owner not in (None, first_owner)


def test_a_waiter_gives_up_after_its_wait_and_says_so(make_store, caplog):
    store = make_store(lease_seconds=30, lease_wait=0.3)
    token = saved_token(store, now_ms() - 1000)
    store.find_token_by_id(token.get_id())
    with caplog.at_level(logging.WARNING, logger="sqlstore"):
        got = in_thread(store.find_token_by_id, token.get_id()).result(timeout=30)
    # As it is: the waiter's SDK refreshes too, degraded but working.
    assert got.get_access_token() == token.get_access_token()
    warnings = [r.getMessage() for r in caplog.records if r.name == "sqlstore.lease"]
    print(*warnings, sep="\n")
    assert len(warnings) == 1 and token.get_id() in warnings[0]
    for value in (token.get_access_token(), token.get_refresh_token(), SECRET):
        assert value not in caplog.text


def test_a_token_refreshed_since_the_lookup_is_not_leased(make_store):
    store = make_store()
    token = saved_token(store, now_ms() - 1000)
    stale = store.repository.find_by_id(token.get_id())
    fresh = refresh_of(token)
    store.save_token(fresh)
    # A worker whose lookup ran before that save goes on from there.
    got = store.leases.settle(None, stale)
    assert got.access_token == fresh.get_access_token()
    assert lease_of(store, token.get_id()).lease_owner is None


def test_a_row_without_an_access_token_is_leased_for_its_exchange(make_store):
    store = make_store()
    token = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        refresh_token=new_value("refresh"),
        user_signature=UserSignature(USER),
    )
    store.save_token(token)
    assert store.find_token_by_id(token.get_id()).get_access_token() is None
    assert lease_of(store, token.get_id()).lease_owner is not None


def test_a_token_at_the_sdk_s_margin_is_waited_out_then_leased(make_store):
    store = make_store()
    token = saved_token(store, now_ms() + SDK_REFRESH_MARGIN_MS + EDGE_MS // 2)
    found = store.find_token_by_id(token.get_id())
    left = int(found.get_expires_in()) - now_ms()
    print(f"handed back with {left} ms left")
    assert left < SDK_REFRESH_MARGIN_MS  # the SDK refreshes it now
    assert lease_of(store, token.get_id()).lease_owner is not None


def test_revoke_s_lookup_by_id_takes_no_lease(make_store):
    store = make_store()
    token = saved_token(store, now_ms() - 1000)
    store.find_token(OAuthToken(id=token.get_id()))
    assert lease_of(store, token.get_id()).lease_owner is None


def test_with_leases_off_nobody_leases_or_waits(make_store):
    store = make_store(leases=False)
    token = saved_token(store, now_ms() - 1000)
    assert store.leases is None
    for _ in range(3):
        store.find_token_by_id(token.get_id())
        in_thread(store.find_token_by_id, token.get_id()).result(timeout=30)
    assert lease_of(store, token.get_id()).lease_owner is None


def test_every_save_of_the_row_ends_its_lease(make_store):
    store = make_store(lease_seconds=30)
    token = saved_token(store, now_ms() - 1000)
    store.find_token_by_id(token.get_id())
    # A full save by the SDK's grant flow (no id) updates the row too.
    again = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        refresh_token=new_value("refresh"),
        access_token=new_value("access"),
        user_signature=UserSignature(USER),
    )
    again.set_expires_in(str(now_ms() + HOUR_MS))
    store.save_token(again)
    assert again.get_id() == token.get_id()
    assert tuple(lease_of(store, token.get_id())) == (None, None)


def test_a_lease_is_not_a_save(make_store):
    store = make_store()
    token = saved_token(store, now_ms() - 1000)
    before = store.repository.find_by_id(token.get_id()).updated_at
    store.find_token_by_id(token.get_id())
    assert store.repository.find_by_id(token.get_id()).updated_at == before


def test_threads_meeting_an_expired_token_refresh_it_once(make_store):
    store = make_store(lease_seconds=30, lease_wait=30)
    token = saved_token(store, now_ms() - 1000)
    refreshes = []
    start = threading.Barrier(8)

    def worker(n):
        start.wait(timeout=30)
        found = store.find_token_by_id(token.get_id())
        if found.get_access_token() == token.get_access_token():
            refreshes.append(n)  # this one's SDK refreshes, and saves
            time.sleep(0.2)
            store.save_token(refresh_of(token))
        return found

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8), timeout=60))
    print(f"8 threads, {len(refreshes)} refresh(es)")
    assert len(refreshes) == 1


# -- grant claims ----------------------------------------------------------------


def test_the_first_finder_of_a_new_grant_claims_it(make_store):
    store = make_store(lease_seconds=30)
    grant = new_value("grant")
    rows = store.repository.count()
    assert store.find_token(grant_probe(grant)) is None  # its SDK exchanges
    owner, left_ms = claim_of(store, grant)
    print(f"claim owner {owner}, {left_ms} ms left of 30000")
    assert len(owner) == 36 and 0 < left_ms <= 30_000
    # A claim is no token: nobody finds it, lists it or counts it.
    assert store.repository.count() == rows
    assert all(t.get_grant_token() != grant for t in store.get_tokens())


def test_a_claim_waiter_receives_the_holder_s_exchange(make_store):
    store = make_store(lease_seconds=30, lease_wait=30)
    grant = new_value("grant")
    holder = grant_probe(grant)
    assert store.find_token(holder) is None
    started = time.monotonic()
    waiter_probe = grant_probe(grant)
    waiter = in_thread(store.find_token, waiter_probe)
    time.sleep(0.2)
    assert not waiter.done()
    # What the SDK does next: exchange, learn the user's name, save.
    holder.set_access_token(new_value("access"))
    holder.set_refresh_token(new_value("refresh"))
    holder.set_expires_in(str(now_ms() + HOUR_MS))
    holder.set_user_signature(UserSignature(USER))
    store.save_token(holder)
    assert waiter.result(timeout=30) is waiter_probe
    print(f"the waiter had the token {time.monotonic() - started:.2f} s on")
    assert waiter_probe.get_access_token() == holder.get_access_token()
    assert waiter_probe.get_id() == holder.get_id()
    assert claim_of(store, grant) is None  # the holder's save ended it


def test_a_dead_claimant_is_taken_over_when_its_claim_expires(make_store):
    store = make_store(lease_seconds=0.5, lease_wait=30)
    grant = new_value("grant")
    store.find_token(grant_probe(grant))  # a holder that never saves
    first_owner = claim_of(store, grant).lease_owner
    started = time.monotonic()
    got = in_thread(store.find_token, grant_probe(grant)).result(timeout=30)
    print(f"taken over after {time.monotonic() - started:.2f} s (claim 0.5 s)")
    assert got is None  # the waiter's SDK exchanges the grant now
    assert claim_of(store, grant).lease_owner not in (None, first_owner)


def test_a_claim_waiter_gives_up_after_its_wait_and_says_so(make_store, caplog):
    store = make_store(lease_seconds=30, lease_wait=0.3)
    grant = new_value("grant")
    store.find_token(grant_probe(grant))
    with caplog.at_level(logging.WARNING, logger="sqlstore"):
        got = in_thread(store.find_token, grant_probe(grant)).result(timeout=30)
    assert got is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "sqlstore.lease"]
    print(*warnings, sep="\n")
    assert len(warnings) == 1 and "grant" in warnings[0]
    assert grant not in caplog.text and digest(grant) not in caplog.text


def test_a_grant_with_a_user_name_is_claimed_and_received_the_same(make_store):
    store = make_store(lease_wait=30)
    saved_token(store, now_ms() + HOUR_MS)  # the user's earlier sign-in
    grant = new_value("grant")

    def probe():
        return OAuthToken(
            client_id=CLIENT,
            client_secret=SECRET,
            grant_token=grant,
            user_signature=UserSignature(USER),
        )

    holder = probe()
    assert store.find_token(holder) is None  # a new authorization
    waiter_probe = probe()
    waiter = in_thread(store.find_token, waiter_probe)
    time.sleep(0.2)
    holder.set_access_token(new_value("access"))
    holder.set_refresh_token(new_value("refresh"))
    holder.set_expires_in(str(now_ms() + HOUR_MS))
    store.save_token(holder)
    assert waiter.result(timeout=30) is waiter_probe
    assert waiter_probe.get_refresh_token() == holder.get_refresh_token()
    assert store.repository.count() == 1  # the user's row, replaced


def test_no_claim_when_the_sdk_will_not_exchange_the_grant(make_store):
    store = make_store()
    grant = new_value("grant")
    with_refresh = grant_probe(grant)
    with_refresh.set_refresh_token(new_value("refresh"))
    with_access = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        grant_token=grant,
        access_token=new_value("access"),
    )
    assert store.find_token(with_refresh) is None
    assert store.find_token(with_access) is None
    assert claim_of(store, grant) is None


def test_a_thread_that_looks_again_renews_its_own_claim(make_store):
    store = make_store(lease_seconds=30, lease_wait=30)
    grant = new_value("grant")
    store.find_token(grant_probe(grant))
    first_owner = claim_of(store, grant).lease_owner
    assert store.find_token(grant_probe(grant)) is None  # no wait
    assert claim_of(store, grant).lease_owner not in (None, first_owner)


def test_threads_meeting_a_new_grant_exchange_it_once(make_store):
    store = make_store(lease_seconds=30, lease_wait=30)
    grant = new_value("grant")
    exchanges = []
    start = threading.Barrier(8)

    def worker(n):
        start.wait(timeout=30)
        token = grant_probe(grant)
        if store.find_token(token) is None:
            exchanges.append(n)
            time.sleep(0.2)
            token.set_access_token(new_value("access"))
            token.set_refresh_token(new_value("refresh"))
            token.set_expires_in(str(now_ms() + HOUR_MS))
            token.set_user_signature(UserSignature(USER))
            store.save_token(token)
        return token.get_id()

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(worker, range(8), timeout=60))
    print(f"8 threads, {len(exchanges)} exchange(s), ids {len(ids)}")
    assert len(exchanges) == 1 and len(ids) == 1
    assert claim_of(store, grant) is None


def test_expired_claims_are_cleared_by_the_next_claim(make_store):
    store = make_store(lease_seconds=30)
    stale = new_value("grant")
    store.find_token(grant_probe(stale))
    with store.engine.begin() as conn:
        conn.execute(update(claims).values(lease_until=database_now_ms() - 1))
    store.find_token(grant_probe(new_value("grant")))
    assert claim_of(store, stale) is None
    with store.engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(claims)).scalar()
    assert left >= 1


# -- an older table ---------------------------------------------------------------


def test_a_table_from_before_leases_asks_for_an_upgrade(backend, database_url):
    if backend == "sqlite-memory":
        target = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
        migrate.upgrade(target, "26072f260166")
        store = SqlAlchemyStore(engine=target, create_schema=False)
    else:
        target = database_url
        migrate.downgrade(target, "26072f260166")
        store = SqlAlchemyStore(database_url)
    try:
        # Lookups read only the columns every revision has; a save writes
        # the lease's, which an older table lacks.
        assert store.find_token_by_id("some-id") is None
        with pytest.raises(TokenStoreError) as raised:
            saved_token(store, now_ms() + HOUR_MS)
        print(raised.value)
        assert "older than this sqlstore; run `sqlstore upgrade`" in str(raised.value)
    finally:
        store.close()
        migrate.upgrade(target)
