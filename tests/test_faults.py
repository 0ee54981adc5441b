"""The store through database outages, and through a crash in mid-save.

PostgreSQL and MariaDB are reached through a ``FaultProxy`` on 127.0.0.1
(faultproxy.py) that cuts or stalls the connections while the servers go
on running, in a database of this suite's own (the configured test
database's name with ``_faults`` added). The
store is the one the application would have: made once, never restarted.
Each test prints its figures: calls made, failures, the slowest time to
fail, the time to recover, and the proxy's connection counts.

The crash tests kill a child process between a save's UPDATE or INSERT
and its COMMIT, on an SQLite file too, and look at what a fresh store sees.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import pytest
from backends import _ensure_database, server_url_or_skip
from faultproxy import FaultProxy
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.engine import URL, make_url
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import EngineOptions, SchemaError, SqlAlchemyStore, migrate
from sqlstore.model import oauthtoken

SERVERS = ["postgresql", "mariadb"]
DATABASE_SUFFIX = "_faults"
# Short timeouts, so that an outage costs the suite seconds, not minutes.
OPTIONS = EngineOptions(connect_timeout=1.0, statement_timeout=1.0)
# A call may meet a dead pooled connection, retry, and then wait out one
# connect or statement timeout (1 s each); core should retry for no more
# than about 2 s in all. The rest is slack for a loaded machine: eight
# timeouts in a row, one per attempt, would not fit.
FAIL_WITHIN = 5.0
# After restore() the next call may first meet a dead pooled connection:
# one fast failure, one new connection.
RECOVER_WITHIN = 2.0
# A call still running after this is reported as hung, not waited for.
HANG_AFTER = FAIL_WITHIN + 5.0
# Every token value carries this, so one search finds any that leaked.
MARK = "FAULTVALUE"
CLIENT = "1000.FAULTCLIENT"
TEXT_COLUMNS = ("access_token", "refresh_token", "grant_token", "client_secret")


# ------------------------------------------------------------------ tokens


# Expiry (epoch ms, 2030) well ahead: the outages here are not about
# refreshes, and a token the SDK is about to refresh also makes the store
# take a refresh lease, in statements of its own.
FRESH_UNTIL = 1_900_000_000_000


class Tokens:
    """Tokens with values never seen before, each holding MARK."""

    def __init__(self, tag: str):
        self.tag = tag
        self.made = 0

    def value(self, kind: str) -> str:
        self.made += 1
        return f"1000.{kind}.{MARK}.{self.tag}.{self.made}.{time.time_ns()}"

    def new(self, user: Optional[str] = None, token_id=None) -> OAuthToken:
        """A token as the SDK saves it after a grant exchange."""
        self.made += 1
        token = OAuthToken(
            client_id=CLIENT,
            client_secret=self.value("secret"),
            refresh_token=self.value("refresh"),
            access_token=self.value("access"),
            grant_token=self.value("grant"),
            id=token_id,
            user_signature=UserSignature(
                user or f"{self.tag}-{self.made}@example.com:1"
            ),
        )
        token.set_expires_in(str(FRESH_UNTIL + self.made))
        return token

    def refreshed(self, saved: OAuthToken) -> OAuthToken:
        """What the SDK saves after a refresh: same id, new access token."""
        token = OAuthToken(id=saved.get_id(), access_token=self.value("access"))
        token.set_expires_in(str(FRESH_UNTIL + self.made))
        return token


# ---------------------------------------------------------------- backends


def faults_url(server: str) -> URL:
    """The server's URL (conftest's), pointing at this suite's database."""
    url = make_url(server_url_or_skip(server))
    url = url.set(database=url.database + DATABASE_SUFFIX)
    if url.host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"fault tests proxy to 127.0.0.1 only, not {url.host}")
    return url


def as_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def prepared_database(url: URL) -> URL:
    """The database exists, is at head and its token table is empty."""
    _ensure_database(as_text(url))
    try:
        migrate.upgrade(as_text(url))
    except SchemaError:
        # Left at a revision this checkout does not have (another branch's
        # run): the database is this suite's own, so start it afresh.
        _drop_all_tables(url)
        migrate.upgrade(as_text(url))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM oauthtoken"))
    finally:
        engine.dispose()
    return url


def _drop_all_tables(url: URL) -> None:
    engine = create_engine(url)
    try:
        found = MetaData()
        found.reflect(engine)
        found.drop_all(engine)
    finally:
        engine.dispose()


@dataclass
class Proxied:
    proxy: FaultProxy
    store: SqlAlchemyStore
    direct: URL  # the server itself, to look at what was stored
    tokens: Tokens


@pytest.fixture(params=SERVERS)
def proxied(request):
    direct = prepared_database(faults_url(request.param))
    with FaultProxy(direct.port) as proxy:
        via_proxy = direct.set(host="127.0.0.1", port=proxy.port)
        store = SqlAlchemyStore(as_text(via_proxy), options=OPTIONS)
        try:
            yield Proxied(proxy, store, direct, Tokens(request.param))
        finally:
            proxy.restore()
            store.close()


# ----------------------------------------------------------------- calling


@dataclass
class Outcome:
    name: str
    seconds: float
    error: Optional[BaseException] = None
    hung: bool = False


def attempt(proxy: FaultProxy, name: str, call: Callable[[], object]) -> Outcome:
    """Run one call in a thread, so that a hang is measured, not suffered."""
    box: Dict[str, object] = {}

    def run():
        start = time.monotonic()
        try:
            call()
        except BaseException as err:  # reported, and asserted on by callers
            box["error"] = err
        box["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, name=f"call-{name}", daemon=True)
    thread.start()
    thread.join(HANG_AFTER)
    if thread.is_alive():
        # Letting the bytes through ends the call: no thread outlives this.
        proxy.restore()
        thread.join(HANG_AFTER)
        return Outcome(name, HANG_AFTER, hung=True)
    return Outcome(name, box["seconds"], box.get("error"))


def store_calls(env: Proxied, saved: OAuthToken) -> Dict[str, Callable]:
    """One of each of the store's calls, on a token that is stored."""
    store, tokens = env.store, env.tokens
    return {
        "find_token": lambda: store.find_token(
            OAuthToken(user_signature=saved.get_user_signature())
        ),
        "find_token_by_id": lambda: store.find_token_by_id(saved.get_id()),
        "get_tokens": store.get_tokens,
        "save_token(new)": lambda: store.save_token(tokens.new()),
        "save_token(refresh)": lambda: store.save_token(tokens.refreshed(saved)),
        "delete_token": lambda: store.delete_token("no-such-id"),
    }


def run_all(env: Proxied, calls: Dict[str, Callable]) -> List[Outcome]:
    outcomes = []
    for name, call in calls.items():
        outcomes.append(attempt(env.proxy, name, call))
        if outcomes[-1].hung:
            break  # restore() was called to end it: the outage is over
    return outcomes


def warm(env: Proxied) -> OAuthToken:
    """A stored token, and a pooled connection in each of the two engines."""
    saved = env.tokens.new()
    env.store.save_token(saved)  # the transaction engine
    assert env.store.find_token_by_id(saved.get_id()) is not None  # autocommit
    return saved


def report(label: str, failing: List[Outcome], recovery: List[Outcome], env):
    failed = [o for o in failing if o.error is not None or o.hung]
    slowest = max(failing, key=lambda o: o.seconds, default=Outcome("-", 0.0))
    first_back = recovery[0].seconds if recovery else float("nan")
    print(
        f"\n[{label}] during: calls={len(failing)} failed={len(failed)} "
        f"hung={sum(o.hung for o in failing)} "
        f"slowest_fail={slowest.seconds:.2f}s ({slowest.name}); after restore: "
        f"calls={len(recovery)} failed="
        f"{sum(o.error is not None for o in recovery)} "
        f"first_call={first_back:.3f}s; proxy={env.proxy.counts()}"
    )
    for outcome in failing:
        print(f"    {outcome.name}: {outcome.seconds:.2f}s {describe(outcome)}")


def describe(outcome: Outcome) -> str:
    if outcome.hung:
        return f"HUNG (still running after {HANG_AFTER:g}s)"
    if outcome.error is None:
        return "returned"
    return f"{type(outcome.error).__name__}: {str(outcome.error)[-90:]}"


def assert_failed_within_bounds(outcomes: List[Outcome]) -> None:
    for outcome in outcomes:
        assert not outcome.hung, f"{outcome.name} hung: {describe(outcome)}"
        assert isinstance(outcome.error, SDKException), describe(outcome)
        assert outcome.error.code == "TOKEN_STORE", describe(outcome)
        assert outcome.error.cause is not None
        assert outcome.seconds < FAIL_WITHIN, describe(outcome)


def assert_recovered(outcomes: List[Outcome]) -> None:
    for outcome in outcomes:
        assert outcome.error is None, f"{outcome.name}: {describe(outcome)}"
    assert outcomes[0].seconds < RECOVER_WITHIN


def assert_failed_saves_logged(caplog, outcomes: List[Outcome]) -> None:
    failed_saves = [
        o for o in outcomes if o.name.startswith("save") and o.error is not None
    ]
    logged = [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and "token not saved" in r.getMessage()
    ]
    assert len(logged) == len(failed_saves)
    assert all(r.name.startswith("sqlstore") for r in logged)
    assert MARK not in caplog.text


# ------------------------------------------------------------------ outages


def test_calls_fail_fast_during_a_cut_and_work_after_it(proxied, caplog):
    saved = warm(proxied)
    calls = store_calls(proxied, saved)
    with caplog.at_level(logging.DEBUG):
        closed = proxied.proxy.cut()
        failing = run_all(proxied, calls)
        proxied.proxy.restore()
        recovery = run_all(proxied, calls)
    report(f"{proxied.tokens.tag} cut", failing, recovery, proxied)
    assert closed == 2  # one pooled connection per engine
    assert proxied.proxy.counts()["refused"] >= 1
    assert_failed_within_bounds(failing)
    assert_failed_saves_logged(caplog, failing)
    assert_recovered(recovery)


def test_calls_fail_in_bounded_time_while_stalled_and_work_after(proxied, caplog):
    saved = warm(proxied)
    calls = store_calls(proxied, saved)
    with caplog.at_level(logging.DEBUG):
        proxied.proxy.stall()
        failing = run_all(proxied, calls)
        proxied.proxy.restore()
        recovery = run_all(proxied, calls)
    report(f"{proxied.tokens.tag} stall", failing, recovery, proxied)
    assert_failed_within_bounds(failing)
    assert_failed_saves_logged(caplog, failing)
    assert_recovered(recovery)


def test_connections_that_died_in_the_pool_are_replaced(proxied, caplog):
    saved = warm(proxied)
    # Several idle connections in each engine's pool, all about to die,
    # besides the one the store keeps between its lone statements.
    for engine in (proxied.store.engine, proxied.store.repository.autocommit_engine):
        held = [engine.connect() for _ in range(3)]
        for conn in held:
            conn.close()
    idle = proxied.proxy.counts()["open"]
    closed = proxied.proxy.cut()
    proxied.proxy.restore()
    before = proxied.proxy.counts()["forwarded"]
    with caplog.at_level(logging.DEBUG, logger="sqlstore"):
        recovery = run_all(proxied, store_calls(proxied, saved))
        recovery += run_all(proxied, store_calls(proxied, saved))
    opened = proxied.proxy.counts()["forwarded"] - before
    retries = [r for r in caplog.records if "retrying after" in r.getMessage()]
    report(f"{proxied.tokens.tag} dead pool", [], recovery, proxied)
    print(
        f"    pooled connections cut: {closed}; retries: {len(retries)}; "
        f"new connections: {opened}"
    )
    assert closed == idle >= 6
    assert_recovered(recovery)
    # One failed attempt per engine: after the first disconnect the pool
    # replaces the other old connections at checkout, without trying them.
    assert len(retries) <= 2
    assert opened <= closed


@dataclass
class Ledger:
    """Every save a writer made, and whether the store said it worked."""

    new: Dict[str, OAuthToken] = field(default_factory=dict)  # returned ok
    refreshes: Dict[str, List[tuple]] = field(default_factory=dict)
    failures: int = 0
    errors: List[BaseException] = field(default_factory=list)


def write_until(env: Proxied, ledger: Ledger, stop: threading.Event) -> None:
    """Save new tokens and refreshes of them until told to stop."""
    deadline = time.monotonic() + 30  # bounded, whatever happens to `stop`
    while not stop.is_set() and time.monotonic() < deadline:
        token = env.tokens.new()
        if record_save(ledger, env.store, token):
            ledger.new[token.get_id()] = token
        for saved in list(ledger.new.values())[-2:]:
            refresh = env.tokens.refreshed(saved)
            done = record_save(ledger, env.store, refresh)
            ledger.refreshes.setdefault(saved.get_id(), []).append(
                (refresh.get_access_token(), done)
            )
        time.sleep(0.01)


def record_save(ledger: Ledger, store: SqlAlchemyStore, token) -> bool:
    try:
        store.save_token(token)
        return True
    except SDKException as err:
        ledger.failures += 1
        ledger.errors.append(err)
        return False


def test_saves_that_returned_survive_an_outage(proxied, caplog):
    ledger, stop = Ledger(), threading.Event()
    writer = threading.Thread(target=write_until, args=(proxied, ledger, stop))
    with caplog.at_level(logging.DEBUG):
        writer.start()
        for fault in (proxied.proxy.cut, proxied.proxy.stall):
            time.sleep(0.4)
            fault()
            time.sleep(1.5)
            proxied.proxy.restore()
        time.sleep(0.4)
        stop.set()
        writer.join(HANG_AFTER * 3)
    assert not writer.is_alive()
    stored = stored_rows(proxied.direct)
    refreshes = sum(len(v) for v in ledger.refreshes.values())
    print(
        f"\n[{proxied.tokens.tag} writer] saves: new={len(ledger.new)} ok, "
        f"refreshes={refreshes}, failed={ledger.failures}; rows={len(stored)}; "
        f"proxy={proxied.proxy.counts()}"
    )
    assert ledger.failures >= 1 and len(ledger.new) >= 3
    assert all(e.code == "TOKEN_STORE" for e in ledger.errors)
    assert_new_saves_kept(ledger, stored)
    assert_refreshes_kept(ledger, stored)
    logged = [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name.startswith("sqlstore")
    ]
    assert len(logged) == ledger.failures
    assert all("token not saved" in r.getMessage() for r in logged)
    assert MARK not in caplog.text


def stored_rows(url: URL) -> Dict[str, dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            # Through the model's types, which read MySQL's VARBINARY keys
            # back as the strings that were saved.
            found = conn.execute(select(oauthtoken))
            return {row["id"]: dict(row) for row in found.mappings()}
    finally:
        engine.dispose()


def assert_new_saves_kept(ledger: Ledger, stored: Dict[str, dict]) -> None:
    for token_id, token in ledger.new.items():
        row = stored[token_id]
        assert row["refresh_token"] == token.get_refresh_token()
        assert row["client_secret"] == token.get_client_secret()
        assert row["grant_token"] == token.get_grant_token()


def assert_refreshes_kept(ledger: Ledger, stored: Dict[str, dict]) -> None:
    # A failed save may still have committed (the answer was lost, not the
    # statement), so the row holds the last access token that was reported
    # saved, or one from a failed save made after it.
    for token_id, saves in ledger.refreshes.items():
        kept = [value for value, done in saves if done]
        if not kept:
            continue
        last = max(i for i, (_v, done) in enumerate(saves) if done)
        allowed = {saves[last][0]} | {value for value, _d in saves[last + 1 :]}
        assert stored[token_id]["access_token"] in allowed


# ------------------------------------------------------------------- crashes


CRASH_CHILD = r"""
import os, signal, sys
from sqlalchemy import event
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
from sqlstore import SqlAlchemyStore

url, user, mark = sys.argv[1:4]
store = SqlAlchemyStore(url)

def kill_after_write(conn, cursor, statement, *_args):
    # The statement has been sent and run; the COMMIT has not.
    verb = statement.lstrip().split()[0].upper()
    if verb in ("UPDATE", "INSERT"):
        print("killed after", verb, file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

event.listen(store.engine, "after_cursor_execute", kill_after_write)
token = OAuthToken(
    client_id="1000.FAULTCLIENT", client_secret=mark + "-secret-new",
    refresh_token=mark + "-refresh-new", access_token=mark + "-access-new",
    grant_token=mark + "-grant-new", user_signature=UserSignature(user),
)
store.save_token(token)
sys.exit("the save returned: the hook never fired")
"""

OLD_USER = "crash-old@example.com:1"
CRASH_USERS = {"UPDATE": OLD_USER, "INSERT": "crash-new@example.com:1"}


def crash_url(backend: str, tmp_path) -> str:
    if backend == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        migrate.upgrade(url)
        return url
    return as_text(prepared_database(faults_url(backend)))


@pytest.mark.parametrize("verb", sorted(CRASH_USERS))
@pytest.mark.parametrize("backend", ["sqlite-file"] + SERVERS)
def test_a_save_killed_before_commit_leaves_the_old_row(backend, verb, tmp_path):
    url = crash_url(backend, tmp_path)
    options = EngineOptions(
        connect_timeout=1.0, statement_timeout=2.0, busy_timeout=2.0
    )
    old = Tokens("crash").new(user=OLD_USER)
    first = SqlAlchemyStore(url, options=options)
    first.save_token(old)
    before = stored_rows(make_url(url))
    first.close()

    start = time.monotonic()
    child = run_crash_child(url, CRASH_USERS[verb], tmp_path)
    crashed = time.monotonic() - start
    after = stored_rows(make_url(url))
    fresh = SqlAlchemyStore(url, options=options)
    start = time.monotonic()
    again = Tokens("after-crash").new(user=OLD_USER)
    fresh.save_token(again)
    saved_in = time.monotonic() - start
    final = stored_rows(make_url(url))
    fresh.close()
    print(
        f"\n[{backend} crash after {verb}] child: rc={child.returncode} "
        f"in {crashed:.2f}s, {child.stderr.strip().splitlines()[-1:]}; "
        f"rows before={len(before)} after={len(after)}; "
        f"next save {saved_in:.3f}s"
    )
    assert child.returncode == -9, child.stderr[-2000:]
    assert f"killed after {verb}" in child.stderr
    assert after == before  # every column of the old row, and no other row
    assert final[old.get_id()]["access_token"] == again.get_access_token()
    assert len(final) == 1
    assert saved_in < 5.0
    if backend == "sqlite-file":
        assert sqlite_integrity(url) == "ok"


def run_crash_child(url: str, user: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, url, user, MARK],
        cwd=tmp_path,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def sqlite_integrity(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("PRAGMA integrity_check")).scalar()
    finally:
        engine.dispose()
