"""Concurrent saves lose nothing, on every backend.

Eight processes, each with a store of its own made from the URL, and
sixteen threads sharing one store, save real SDK tokens at the same moment
in four races:

- new-users: every save is a user nobody else saves;
- same-users: four users saved over and over from every worker, by tokens
  without an id, so that locate-then-insert races on the unique key;
- racing-inserts: at each step every worker saves the same user, new to the
  table, so that every step is an insert race on the unique key;
- refresh-one: one user's token refreshed from every worker at once, by
  its id, as the SDK saves it after a refresh (and as Zoho's answer leaves
  it: a new access token, no refresh token).

Afterwards the table must hold one row per user, client and data centre,
and each row must be the result of a save that returned: the last save of
one of the workers (a worker's earlier saves are overwritten by its own
later ones). No race the store can win may reach the caller as an error.

Each race prints one line: saves, retries (the DEBUG records core logs per
retry, counted in each process), rows expected and found, losses, errors.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import multiprocessing
import secrets
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import EngineOptions, SqlAlchemyStore, SqlStoreError
from sqlstore.core import ATTEMPTS, RETRY_WINDOW
from sqlstore.model import oauthtoken as table

PROCESSES, SAVES_PER_PROCESS = 8, 60
THREADS, SAVES_PER_THREAD = 16, 30
RACES = ["new-users", "same-users", "racing-inserts", "refresh-one"]
SHARED_BACKENDS = ["sqlite-file", "postgresql", "mariadb"]

CLIENT = "1000.CONCURRENCYCLIENT"
SECRET = "client-secret-" + "c" * 28
DOMAIN = "https://www.zohoapis.com"
SAME_USERS = [f"same{n}@example.com:7000001" for n in range(4)]
REFRESHED_USER = "refreshed@example.com:7000001"
EPOCH_MS = 4102444800000
# Seconds one race may take before the test gives up on it: far above the
# few seconds a race takes, and below any CI job's limit.
DEADLINE = 120.0


# -- tokens --------------------------------------------------------------


def new_value(kind: str) -> str:
    return f"1000.{kind}.{secrets.token_hex(16)}"


def full_token(user, refresh, access, expires, token_id=None) -> OAuthToken:
    """A token as the SDK holds it after an exchange or a refresh."""
    token = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        refresh_token=refresh,
        redirect_url="https://app.example.com/oauth/callback",
        id=token_id,
        access_token=access,
        user_signature=UserSignature(user),
        api_domain=DOMAIN,
    )
    token.set_expires_in(expires)
    return token


def refresh_answer(token_id, access, expires) -> OAuthToken:
    """What Zoho's refresh answer carries: no refresh token, no user."""
    token = OAuthToken(id=token_id, access_token=access)
    token.set_expires_in(expires)
    return token


# -- one worker's saves ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Job:
    """One worker's part in a race; picklable, for the processes."""

    race: str
    worker: int
    saves: int
    seed_id: Optional[str] = None
    seed_refresh: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Saved:
    """A save that returned, and the row state it should have left."""

    user: str
    id: str
    refresh: str
    access: str
    expiry: int


def user_for(job: Job, n: int) -> str:
    if job.race == "new-users":
        return f"new-w{job.worker}-n{n}@example.com:7000001"
    if job.race == "racing-inserts":
        return f"race-n{n}@example.com:7000001"
    # Every worker on the same user at the same step: the collision is as
    # likely as the scheduler lets it be.
    return SAME_USERS[n % len(SAME_USERS)]


def token_for(job: Job, n: int) -> OAuthToken:
    # The expiry tells saves apart too, so a row whose access token and
    # expiry come from two different saves is caught.
    expires = str(EPOCH_MS + job.worker * 10_000 + n)
    access = new_value("access")
    if job.race != "refresh-one":
        return full_token(user_for(job, n), new_value("refresh"), access, expires)
    if n % 2:
        return full_token(
            REFRESHED_USER, job.seed_refresh, access, expires, job.seed_id
        )
    return refresh_answer(job.seed_id, access, expires)


def saved(job: Job, token: OAuthToken) -> Saved:
    signature = token.get_user_signature()
    return Saved(
        user=signature.get_name() if signature else REFRESHED_USER,
        id=token.get_id(),
        # A save without a refresh token must leave the stored one.
        refresh=token.get_refresh_token() or job.seed_refresh,
        access=token.get_access_token(),
        expiry=int(token.get_expires_in()),
    )


def run_job(store: SqlAlchemyStore, job: Job) -> dict:
    """Save and record; a failure is kept to be reported, not raised."""
    done: List[Saved] = []
    failed: List[str] = []
    for n in range(job.saves):
        token = token_for(job, n)
        try:
            store.save_token(token)
        except SDKException as err:
            failed.append(f"{type(err).__name__}: {err}")
            continue
        done.append(saved(job, token))
    return {"saves": done, "errors": failed}


# -- counting retries ----------------------------------------------------


class RetryCounter(logging.Handler):
    """Counts core's "retrying after <kind>" records, by kind."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.kinds = collections.Counter()

    def emit(self, record):
        message = record.getMessage()
        if "retrying after " in message:
            self.kinds[message.rsplit("retrying after ", 1)[1]] += 1


@contextlib.contextmanager
def counting_retries():
    logger = logging.getLogger("sqlstore.core")
    counter, level = RetryCounter(), logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    try:
        yield counter.kinds
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)


# -- running a race in processes -------------------------------------------

# The processes' start line, set by the pool's initializer.
_START = None


def _join_start(barrier) -> None:
    global _START
    _START = barrier


def _ready() -> None:
    _START.wait(timeout=DEADLINE)


def job_in_process(url: str, job: Job, create_schema: bool = False) -> dict:
    """A process's part: a store of its own, its retries counted here."""
    _START.wait(timeout=DEADLINE)
    with counting_retries() as kinds:
        try:
            store = SqlAlchemyStore(url, create_schema=create_schema)
        except SqlStoreError as err:
            # Reported, not raised: the other processes' figures still count.
            failure = f"starting: {type(err).__name__}: {err}"
            return {"saves": [], "errors": [failure], "retries": dict(kinds)}
        try:
            outcome = run_job(store, job)
        finally:
            store.close()
    outcome["retries"] = dict(kinds)
    return outcome


@pytest.fixture(scope="module")
def process_pool():
    """Eight spawned processes, kept for every race of this module.

    Spawning and importing the SDK takes a second of CPU per process; one
    pool for all races keeps that out of each race. Each job waits at a
    barrier as wide as the pool, so each of a race's jobs gets a process
    of its own and all start saving together.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    pool = context.Pool(PROCESSES, initializer=_join_start, initargs=(barrier,))
    # Every process up, with this module imported, before any race is timed.
    pool.starmap_async(_ready, [()] * PROCESSES, chunksize=1).get(DEADLINE)
    yield pool
    pool.close()
    pool.join()


def race_processes(pool, url: str, jobs: List[Job], create_schema=False):
    pending = pool.starmap_async(
        job_in_process,
        [(url, job, create_schema) for job in jobs],
        chunksize=1,
    )
    return pending.get(timeout=DEADLINE)


# -- running a race in threads ---------------------------------------------


def race_threads(store: SqlAlchemyStore, jobs: List[Job]) -> List[dict]:
    start = threading.Barrier(len(jobs))

    def job_in_thread(job: Job) -> dict:
        start.wait(timeout=DEADLINE)
        return run_job(store, job)

    with counting_retries() as kinds:
        with ThreadPoolExecutor(len(jobs)) as threads:
            futures = [threads.submit(job_in_thread, job) for job in jobs]
            outcomes = [future.result(timeout=DEADLINE) for future in futures]
    # One store, one count: it goes with the first outcome.
    outcomes[0]["retries"] = dict(kinds)
    return outcomes


def plan(race: str, workers: int, saves: int, store) -> List[Job]:
    """The jobs of a race; refresh-one first saves the token to refresh."""
    seed_id = seed_refresh = None
    if race == "refresh-one":
        seed_refresh = new_value("refresh")
        seed = full_token(
            REFRESHED_USER, seed_refresh, new_value("access"), str(EPOCH_MS)
        )
        store.save_token(seed)
        seed_id = seed.get_id()
    return [
        Job(race, worker, saves, seed_id, seed_refresh) for worker in range(workers)
    ]


# -- what the table must show afterwards ---------------------------------


@dataclasses.dataclass
class Tally:
    saves: int
    retries: Dict[str, int]
    expected_rows: int
    found_rows: int
    duplicates: List[tuple]
    losses: List[str]
    errors: List[str]

    def line(self, label: str, workers: int, seconds: float) -> str:
        retries = sum(self.retries.values())
        kinds = ",".join(f"{k}={v}" for k, v in sorted(self.retries.items()))
        return (
            f"{label}: workers={workers} saves={self.saves} "
            f"retries={retries} ({kinds or 'none'}) rows "
            f"expected={self.expected_rows} found={self.found_rows} "
            f"duplicates={len(self.duplicates)} losses={len(self.losses)} "
            f"errors={len(self.errors)} time={seconds:.1f}s"
        )


def stored_rows(store) -> list:
    # Through the table's own types: MySQL's keys are VARBINARY, which a
    # text query would hand back as bytes.
    with store.engine.connect() as conn:
        return list(conn.execute(select(table)))


def final_states(outcomes: List[dict]) -> Dict[str, set]:
    """Per user, the states a row may end in: each worker's last save."""
    finals = collections.defaultdict(set)
    for outcome in outcomes:
        last = {}
        for save in outcome["saves"]:
            last[save.user] = save
        for user, save in last.items():
            finals[user].add((save.refresh, save.access, save.expiry))
    return finals


def lost_users(rows, outcomes) -> List[str]:
    """Users whose row does not show the last of some worker's saves."""
    by_user = {row.user_name: row for row in rows}
    ids = collections.defaultdict(set)
    for outcome in outcomes:
        for save in outcome["saves"]:
            ids[save.user].add(save.id)
    lost = []
    for user, allowed in final_states(outcomes).items():
        row = by_user.get(user)
        state = row and (row.refresh_token, row.access_token, row.expiry_time)
        # All of one user's saves must have named one row, and that row.
        if state not in allowed or ids[user] != {row.id}:
            lost.append(user)
    return lost


def tally(store, outcomes: List[dict]) -> Tally:
    rows = stored_rows(store)
    keys = collections.Counter(
        (row.user_name, row.client_id, row.api_domain) for row in rows
    )
    retries = collections.Counter()
    for outcome in outcomes:
        retries.update(outcome.get("retries", {}))
    return Tally(
        saves=sum(len(outcome["saves"]) for outcome in outcomes),
        retries=dict(retries),
        expected_rows=len(final_states(outcomes)),
        found_rows=len(rows),
        duplicates=[key for key, count in keys.items() if count > 1],
        losses=lost_users(rows, outcomes),
        errors=[error for outcome in outcomes for error in outcome["errors"]],
    )


def expected_rows(race: str, workers: int, saves: int) -> int:
    return {
        "new-users": workers * saves,
        "same-users": len(SAME_USERS),
        "racing-inserts": saves,
        "refresh-one": 1,
    }[race]


def assert_nothing_lost(result: Tally, race: str, workers: int, saves: int):
    assert result.errors == [], result.errors[:3]
    assert result.saves == workers * saves
    assert result.duplicates == []
    assert result.expected_rows == expected_rows(race, workers, saves)
    assert result.found_rows == result.expected_rows
    assert result.losses == [], result.losses[:3]


def assert_sqlite_saves_are_atomic(backend: str, result: Tally) -> None:
    # BEGIN IMMEDIATE makes locate-then-insert one unit on SQLite: a second
    # writer waits for the lock and then finds the row, so no insert ever
    # meets a unique-key conflict.
    if backend.startswith("sqlite"):
        assert result.retries.get("IntegrityError", 0) == 0, result.retries


# -- the races -------------------------------------------------------------


@pytest.mark.parametrize("race", RACES)
@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_processes_each_with_a_store_lose_nothing(
    backend, race, database_url, store, process_pool
):
    jobs = plan(race, PROCESSES, SAVES_PER_PROCESS, store)
    began = time.monotonic()
    outcomes = race_processes(process_pool, database_url, jobs)
    seconds = time.monotonic() - began
    result = tally(store, outcomes)
    print("\n" + result.line(f"{backend} processes {race}", PROCESSES, seconds))
    assert_nothing_lost(result, race, PROCESSES, SAVES_PER_PROCESS)
    assert_sqlite_saves_are_atomic(backend, result)


@pytest.mark.parametrize("race", RACES)
def test_threads_sharing_a_store_lose_nothing(backend, race, store):
    jobs = plan(race, THREADS, SAVES_PER_THREAD, store)
    began = time.monotonic()
    outcomes = race_threads(store, jobs)
    seconds = time.monotonic() - began
    result = tally(store, outcomes)
    print("\n" + result.line(f"{backend} threads {race}", THREADS, seconds))
    assert_nothing_lost(result, race, THREADS, SAVES_PER_THREAD)
    assert_sqlite_saves_are_atomic(backend, result)


# -- servers whose default isolation is stricter -----------------------------

# Set on the server side, as a DBA's database or role default would be:
# PostgreSQL through the startup options, MariaDB through a command run
# at connect. innodb_snapshot_isolation is MariaDB's default from 11.6 on.
STRICTER = {
    "postgresql": {"options": "-c default_transaction_isolation=serializable"},
    "mariadb": {"init_command": "SET SESSION innodb_snapshot_isolation=ON"},
}


def stricter_url(backend: str, database_url: str) -> str:
    url = make_url(database_url).update_query_dict(STRICTER[backend])
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except DBAPIError as err:  # MySQL has no innodb_snapshot_isolation
        pytest.skip(f"{backend} cannot be made stricter: {err.orig}")
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize("race", ["same-users", "racing-inserts"])
@pytest.mark.parametrize("backend", sorted(STRICTER))
def test_a_stricter_server_default_isolation_loses_nothing(
    backend, race, database_url, store, process_pool
):
    # A save's locate-then-update under a snapshot fails whenever another
    # save changed the row after the locate: PostgreSQL's serialization
    # failure, MariaDB's 1020 "Record has changed since last read". On a
    # few hot rows that is most saves, and retries alone do not keep up.
    url = stricter_url(backend, database_url)
    isolation = transaction_isolation(url)
    jobs = plan(race, PROCESSES, SAVES_PER_PROCESS, store)
    began = time.monotonic()
    outcomes = race_processes(process_pool, url, jobs)
    seconds = time.monotonic() - began
    result = tally(store, outcomes)
    label = f"{backend} stricter-isolation ({isolation}) processes {race}"
    print("\n" + result.line(label, PROCESSES, seconds))
    assert_nothing_lost(result, race, PROCESSES, SAVES_PER_PROCESS)
    # Losses here come and go with the scheduler; the store's own setting
    # that prevents them does not.
    assert isolation == "READ COMMITTED"


def transaction_isolation(url: str) -> str:
    """The isolation a store's save transaction gets on this server."""
    store = SqlAlchemyStore(url)
    try:
        with store.engine.connect() as conn:
            return conn.get_isolation_level()
    finally:
        store.close()


# -- SQLite's locks ----------------------------------------------------------

FIRST_START_ROUNDS, FIRST_START_SAVES = 12, 5


def test_processes_starting_together_on_a_new_sqlite_file_all_work(
    tmp_path, process_pool
):
    # Many workers of a fresh deploy open a file that does not exist yet,
    # each creating the schema. Turning the new file to WAL needs it to
    # itself; SQLite refuses that at once, not after its busy timeout, to a
    # process that opens the file at the same moment as another.
    failures, saves, retries = [], 0, collections.Counter()
    began = time.monotonic()
    for round_ in range(FIRST_START_ROUNDS):
        url = f"sqlite:///{tmp_path / f'new-{round_}.db'}"
        jobs = [
            Job("same-users", worker, FIRST_START_SAVES)
            for worker in range(PROCESSES)
        ]
        outcomes = race_processes(process_pool, url, jobs, create_schema=True)
        store = SqlAlchemyStore(url)
        result = tally(store, outcomes)
        store.close()
        failures += result.errors + result.losses + result.duplicates
        saves += result.saves
        retries.update(result.retries)
    seconds = time.monotonic() - began
    print(
        f"\nsqlite-file first start: rounds={FIRST_START_ROUNDS} "
        f"processes={PROCESSES} saves={saves} retries={dict(retries)} "
        f"failures={len(failures)} time={seconds:.1f}s"
    )
    assert failures == [], failures[:3]
    assert saves == FIRST_START_ROUNDS * PROCESSES * FIRST_START_SAVES


def hold_write_lock(path: str, seconds: Optional[float]):
    """Another program's connection holding the file's write lock."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    if seconds is None:
        return holder, None
    release = threading.Timer(seconds, holder.rollback)
    release.start()
    return holder, release


def test_a_new_file_another_process_is_setting_up_is_waited_for(tmp_path):
    # The moment the first-start race hits, made to last: another program
    # holds the write lock of a new file, still in rollback-journal mode.
    # SQLite refuses the switch to WAL at once, busy timeout or not; the
    # store must wait, then set the file up and save.
    path = tmp_path / "new.db"
    holder, release = hold_write_lock(str(path), 0.3)
    began = time.monotonic()
    try:
        store = SqlAlchemyStore(f"sqlite:///{path}", create_schema=True)
        token = full_token(REFRESHED_USER, new_value("refresh"), None, None)
        store.save_token(token)
    finally:
        release.join()
        holder.close()
    seconds = time.monotonic() - began
    with store.engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    found = store.find_token_by_id(token.get_id())
    store.close()
    print(f"\nnew file locked 0.3s: set up and saved after {seconds:.2f}s, {mode}")
    assert found.get_refresh_token() == token.get_refresh_token()
    assert mode == "wal"
    assert 0.25 < seconds < 5.0


@pytest.mark.parametrize("backend", ["sqlite-file"])
def test_a_writer_waits_out_a_lock_within_the_busy_timeout(database_url):
    # The busy timeout, not a retry, carries a save past another writer's
    # lock: it gets through soon after the lock is let go.
    store = SqlAlchemyStore(database_url)
    holder, release = hold_write_lock(database_url[len("sqlite:///") :], 0.5)
    began = time.monotonic()
    try:
        with counting_retries() as kinds:
            token = full_token(REFRESHED_USER, new_value("refresh"), None, None)
            store.save_token(token)
    finally:
        release.join()
        holder.close()
    seconds = time.monotonic() - began
    found = store.find_token_by_id(token.get_id())
    store.close()
    print(f"\nlock held 0.5s: saved after {seconds:.2f}s, retries={dict(kinds)}")
    assert found.get_refresh_token() == token.get_refresh_token()
    assert dict(kinds) == {}
    assert 0.4 < seconds < 2.0


@pytest.mark.parametrize("backend", ["sqlite-file"])
def test_a_lock_held_past_every_retry_is_reported_in_bounded_time(
    database_url, caplog
):
    # Another program holds the file's write lock and does not let go:
    # each attempt waits out the busy timeout, then the save is reported.
    store = SqlAlchemyStore(database_url, options=EngineOptions(busy_timeout=0.1))
    holder, _ = hold_write_lock(database_url[len("sqlite:///") :], None)
    began = time.monotonic()
    try:
        with counting_retries() as kinds, caplog.at_level(logging.ERROR):
            with pytest.raises(SDKException) as raised:
                store.save_token(full_token(REFRESHED_USER, None, None, None))
    finally:
        holder.rollback()
        holder.close()
        store.close()
    seconds = time.monotonic() - began
    retries = sum(kinds.values())
    print(f"\nlocked file: retries={retries} {dict(kinds)} time={seconds:.1f}s")
    assert raised.value.code == "TOKEN_STORE"
    assert "database is locked" in str(raised.value)
    assert 1 <= retries <= ATTEMPTS - 1
    assert "token not saved" in caplog.text
    # Retries stop at the retry window; the last attempt waits out one busy
    # timeout and one back-off more. Far below the default busy timeout.
    assert seconds < RETRY_WINDOW + 0.1 + 0.25 + 1.0
