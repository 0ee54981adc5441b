"""Twenty SDK processes meet one expired token, or one new grant token.

Each worker is a process of its own running the real SDK
(``sqlstore.scenario``) with a store of its own, against the loopback
stand-in, which counts every exchange. The twenty are spawned once for
the module, with the SDK imported, and each run releases them together
from a barrier, so that they really ask for the token at one moment
rather than one after another as they finish starting up.

Every test prints what the stand-in counted. The lease length and waits
are figures of the run, printed, never asserted.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Dict, List

import pytest
from sqlalchemy import func, select
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import SqlAlchemyStore
from sqlstore.dbclock import database_now_ms
from sqlstore.model import oauthtoken as table
from sqlstore.model import oauthtoken_claim as claims
from sqlstore.scenario import run
from sqlstore.standin import ZohoStandIn

pytestmark = pytest.mark.e2e

WORKERS = 20
SHARED_BACKENDS = ["sqlite-file", "postgresql", "mariadb"]
EMAIL = "workers@example.com"
# Long enough that the holder's refresh is still at the stand-in when the
# others look the token up.
TOKEN_DELAY = 0.5
DEADLINE = 180.0
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


# -- the worker processes ----------------------------------------------------

_START = None


def _join_start(barrier) -> None:
    global _START
    _START = barrier
    # The stand-in is on the loopback address: no proxy may sit between.
    for name in PROXY_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")


def _ready() -> None:
    _START.wait(timeout=DEADLINE)


def _worker(arguments: dict) -> dict:
    """One application process's run: the SDK's lookup, then Leads."""
    _START.wait(timeout=DEADLINE)
    try:
        outcome = run(**arguments)
    except Exception as err:  # counted and shown by kind, never raised here
        return {"records": 0, "error": type(err).__name__, "done": time.time()}
    return {"records": outcome.records, "error": None, "done": time.time()}


@pytest.fixture(scope="module")
def workers():
    """Twenty spawned processes, up and waiting, kept for the module."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    pool = context.Pool(WORKERS, initializer=_join_start, initargs=(barrier,))
    pool.starmap_async(_ready, [()] * WORKERS, chunksize=1).get(DEADLINE)
    yield pool
    pool.close()
    pool.join()


def dispatch(pool, arguments: dict):
    """Start the twenty on the same arguments; .get() gives their results."""
    return pool.map_async(_worker, [arguments] * WORKERS, chunksize=1)


# -- the stand-in and the stored token ---------------------------------------


@pytest.fixture
def zoho(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with ZohoStandIn(token_delay=TOKEN_DELAY) as server:
        yield server


def common(zoho, database_url, **options) -> dict:
    return dict(
        database_url=database_url,
        zoho_url=zoho.url,
        client_id=zoho.client_id,
        client_secret=zoho.client_secret,
        options=options,
    )


def seed_expired_token(zoho, database_url) -> OAuthToken:
    """The user's row as an earlier sign-in left it, its access token dead."""
    store = SqlAlchemyStore(database_url)
    token = OAuthToken(
        client_id=zoho.client_id,
        client_secret=zoho.client_secret,
        refresh_token=zoho.issue_refresh_token(EMAIL),
        access_token="1000.expired.0000000000000000",
        user_signature=UserSignature(zoho.user_name(EMAIL)),
        api_domain=zoho.url,
    )
    token.set_expires_in("1000")
    store.save_token(token)
    store.close()
    return token


def row_state(database_url, token_id: str) -> dict:
    store = SqlAlchemyStore(database_url)
    columns = (
        table.c.access_token,
        table.c.lease_owner,
        table.c.lease_until,
        table.c.updated_at,
    )
    with store.engine.connect() as conn:
        row = conn.execute(select(*columns).where(table.c.id == token_id)).one()
        rows = conn.execute(select(func.count()).select_from(table)).scalar()
        now = conn.execute(select(database_now_ms())).scalar()
    store.close()
    return dict(row._asdict(), rows=rows, database_now=now)


def claims_left(database_url) -> int:
    store = SqlAlchemyStore(database_url)
    with store.engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(claims)).scalar()
    store.close()
    return left


def tally(results: List[dict]) -> Dict[str, int]:
    kinds: Dict[str, int] = {}
    for result in results:
        kind = result["error"] or "ok"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


# -- refresh -----------------------------------------------------------------


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_twenty_workers_refresh_an_expired_token_once(workers, zoho, database_url):
    token = seed_expired_token(zoho, database_url)
    arguments = common(zoho, database_url, lease_seconds=10, lease_wait=30)
    started = time.time()
    results = dispatch(workers, dict(arguments, user_name=zoho.user_name(EMAIL)))
    results = results.get(DEADLINE)
    counts = zoho.counts
    print(
        f"leases on: {WORKERS} workers, refreshes={counts['refresh']}, "
        f"results={tally(results)}, {time.time() - started:.1f} s"
    )
    assert counts["refresh"] == 1
    assert all(r["records"] == 2 for r in results), tally(results)
    state = row_state(database_url, token.get_id())
    assert state["access_token"] != token.get_access_token()
    assert (state["lease_owner"], state["lease_until"], state["rows"]) == (
        None,
        None,
        1,
    )


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_twenty_workers_without_leases_each_refresh(workers, zoho, database_url):
    token = seed_expired_token(zoho, database_url)
    arguments = common(zoho, database_url, leases=False)
    results = dispatch(workers, dict(arguments, user_name=zoho.user_name(EMAIL)))
    results = results.get(DEADLINE)
    counts = zoho.counts
    print(
        f"leases off: {WORKERS} workers, refreshes={counts['refresh']}, "
        f"results={tally(results)}"
    )
    # Every worker works, each with an access token of its own.
    assert all(r["records"] == 2 for r in results), tally(results)
    assert counts["refresh"] >= 1
    state = row_state(database_url, token.get_id())
    assert (state["lease_owner"], state["rows"]) == (None, 1)


# -- grant exchange ----------------------------------------------------------


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_twenty_workers_exchange_a_new_grant_token_once(workers, zoho, database_url):
    grant = zoho.new_grant_token(EMAIL)
    arguments = common(zoho, database_url, lease_seconds=10, lease_wait=30)
    results = dispatch(workers, dict(arguments, grant_token=grant)).get(DEADLINE)
    counts = zoho.counts
    print(
        f"leases on: {WORKERS} workers, grant exchanges={counts['grant']}, "
        f"refused={counts['rejected']}, results={tally(results)}"
    )
    assert (counts["grant"], counts["rejected"]) == (1, 0)
    assert all(r["records"] == 2 for r in results), tally(results)
    assert claims_left(database_url) == 0


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_twenty_workers_without_leases_race_for_the_grant(workers, zoho, database_url):
    grant = zoho.new_grant_token(EMAIL)
    arguments = common(zoho, database_url, leases=False)
    results = dispatch(workers, dict(arguments, grant_token=grant)).get(DEADLINE)
    counts = zoho.counts
    kinds = tally(results)
    print(
        f"leases off: {WORKERS} workers, grant exchanges tried="
        f"{counts['grant'] + counts['rejected']} (refused as used: "
        f"{counts['rejected']}), results={kinds}"
    )
    # A grant works once: every worker that tried it after the first failed.
    assert counts["grant"] == 1
    assert kinds.get("ok", 0) == WORKERS - counts["rejected"]


# -- a holder killed in the middle of its refresh ----------------------------


def start_holder(arguments: dict) -> subprocess.Popen:
    environment = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    for name in PROXY_VARIABLES:
        environment.pop(name, None)
    holder = subprocess.Popen(
        [sys.executable, "-m", "sqlstore.scenario"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
    )
    # On stdin: the arguments hold a client secret and a database URL.
    holder.stdin.write(json.dumps(arguments))
    holder.stdin.close()
    return holder


def wait_for(condition, seconds: float) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < give_up, "the holder never reached Zoho"
        time.sleep(0.02)


LEASE_SECONDS = 3.0


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_a_holder_killed_mid_refresh_delays_the_others_by_the_lease(
    workers, zoho, database_url
):
    token = seed_expired_token(zoho, database_url)
    arguments = common(zoho, database_url, lease_seconds=LEASE_SECONDS, lease_wait=30)
    arguments["user_name"] = zoho.user_name(EMAIL)
    zoho.hold_token_requests(1)  # the holder's refresh never comes back
    holder = start_holder(arguments)
    try:
        wait_for(lambda: zoho.held_token_requests == 1, DEADLINE)
        leased = row_state(database_url, token.get_id())
        pending = dispatch(workers, arguments)
        time.sleep(1.0)  # the others are looking the token up by now
        holder.kill()
        killed = time.time()
        holder.wait(timeout=30)
        results = pending.get(DEADLINE)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
    counts = zoho.counts
    state = row_state(database_url, token.get_id())
    # The database runs on this host: its clock and ours are one here.
    lease_end = leased["lease_until"] / 1000
    print(
        f"holder killed (exit {holder.returncode}) {lease_end - killed:.1f} s "
        f"before its {LEASE_SECONDS:.0f} s lease ran out; the taker-over's "
        f"refresh was saved {state['updated_at'].timestamp() - lease_end:.1f} s "
        f"after that (the stand-in answers in {TOKEN_DELAY} s), and the last "
        f"of the {WORKERS} others was through "
        f"{max(r['done'] for r in results) - lease_end:.1f} s after it "
        f"({max(r['done'] for r in results) - killed:.1f} s after the kill); "
        f"refreshes answered={counts['refresh']}, results={tally(results)}"
    )
    assert holder.returncode == -9
    assert leased["lease_owner"] is not None
    # The holder's refresh was never answered: one taker-over refreshed.
    assert counts["refresh"] == 1
    assert all(r["records"] == 2 for r in results), tally(results)
    assert state["lease_owner"] is None
    assert state["access_token"] != token.get_access_token()
