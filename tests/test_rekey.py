"""``sqlstore encrypt`` and ``rotate-key`` against running applications.

- The commands through their real entry point: counts, a second run that
  finds everything done, failures named by row id, no key in the output.
- A walk killed in the middle of a batch (SIGKILL, by the process itself
  right after one of its UPDATEs): every row is then either as it was or
  fully rewritten, the committed batches are kept, and a second run
  finishes the rest.
- Encrypting a plain table, and rotating to a new key, while spawned
  processes (each a real SqlAlchemyStore, saving and finding real SDK
  tokens) work on the same rows. Each user belongs to one process, so
  every find must return that process's last save exactly; afterwards
  every row must hold its last save and open under the new key alone.
  Each test prints its saves, finds and the walk's counts.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import queue
import secrets
import signal
import subprocess
import sys

import pytest
from test_encryption import assert_no_secret_in_table, raw_rows
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import SqlAlchemyStore, crypto, rekey

SHARED_BACKENDS = ["sqlite-file", "postgresql", "mariadb"]
KEY_OLD = crypto.generate_key()
KEY_NEW = crypto.generate_key()
CLIENT = "1000.REKEYCLIENT"
SECRET = "rekey-client-SECRET-Tb7Nc2Vx9Qm4Lw1Rz6"
DOMAIN = "https://www.zohoapis.com"
SECRET_FIELDS = ("client_secret", "refresh_token", "access_token", "grant_token")
DEADLINE = 120.0

WORKERS = 4
USERS_PER_WORKER = 30
MIN_OPERATIONS = 90


def new_value(kind: str) -> str:
    return f"1000.{kind}.{secrets.token_hex(16)}"


def full_token(user: str, refresh: str, access: str, expires: str, token_id=None):
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


def seed(url: str, keys, users: int) -> list:
    """Rows saved as the SDK does after a grant: (user, id, refresh, access)."""
    store = SqlAlchemyStore(url, encryption_keys=keys)
    made = []
    try:
        for n in range(users):
            user = f"rekey{n}@example.com:7000001"
            refresh, access = new_value("refresh"), new_value("access")
            token = full_token(user, refresh, access, "4102444800000")
            token.set_grant_token(new_value("grant"))
            store.save_token(token)
            made.append((user, token.get_id(), refresh, access))
    finally:
        store.close()
    return made


def stored_values(rows) -> list:
    return sorted({value for row in rows for value in row[2:]} | {SECRET})


def key_env(*keys) -> dict:
    environment = dict(os.environ)
    environment.pop("SQLSTORE_DATABASE_URL", None)
    environment[crypto.ENV_VAR] = ",".join(keys)
    return environment


def sqlstore(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sqlstore.cli", *args],
        env=env, capture_output=True, text=True, timeout=DEADLINE,
    )


# -- the commands ------------------------------------------------------------


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_the_commands_encrypt_rotate_and_report(database_url):
    rows = seed(database_url, [], 12)
    first = sqlstore("encrypt", "--url", database_url, "--batch-size", "5",
                     env=key_env(KEY_OLD))
    again = sqlstore("encrypt", "--url", database_url, env=key_env(KEY_OLD))
    turned = sqlstore("rotate-key", "--url", database_url,
                      env=key_env(KEY_NEW, KEY_OLD))
    lacking = sqlstore("rotate-key", "--url", database_url,
                       env=key_env(crypto.generate_key()))
    keyless = sqlstore("encrypt", "--url", database_url, env=key_env())
    for name, run in (("encrypt", first), ("again", again), ("rotate", turned),
                      ("lacking the key", lacking), ("no keys", keyless)):
        print(f"{name}: exit {run.returncode}: {run.stdout.strip()} "
              f"| {run.stderr.strip().splitlines()[-1:]}")
    assert first.returncode == 0, first.stderr
    assert "12 rows: 12 encrypted, 0 already done" in first.stdout
    assert first.stderr == ""  # no progress bar when stderr is no terminal
    assert "12 rows: 0 encrypted, 12 already done" in again.stdout
    assert "12 rows: 12 re-encrypted" in turned.stdout
    assert lacking.returncode == 1
    assert "12 failed" in lacking.stdout
    assert all(row[1] in lacking.stderr for row in rows)
    assert keyless.returncode == 1 and "no encryption keys" in keyless.stderr
    everything = "".join(r.stdout + r.stderr for r in (first, again, turned, lacking))
    assert KEY_OLD not in everything and KEY_NEW not in everything
    store = SqlAlchemyStore(database_url, encryption_keys=[KEY_NEW])
    try:
        found = {t.get_id(): t.get_refresh_token() for t in store.get_tokens()}
        assert found == {row[1]: row[2] for row in rows}
        assert_no_secret_in_table(store, stored_values(rows))
    finally:
        store.close()


def test_keygen_prints_a_key_the_store_takes(tmp_path):
    made = sqlstore("keygen", env=key_env())
    key = made.stdout.strip()
    assert made.returncode == 0 and len(key) == 44
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 't.db'}", encryption_keys=[key],
                            create_schema=True)
    assert store.encrypted
    store.close()


# -- a crash in the middle of a batch ----------------------------------------


def walk_then_die(url: str, key: str, die_after: int, batch_size: int) -> None:
    """Encrypt, and kill this process right after the die_after-th UPDATE."""
    real = rekey._compare_and_set
    done = [0]

    def counted(conn, row, changes):
        written = real(conn, row, changes)
        done[0] += 1
        if done[0] == die_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return written

    rekey._compare_and_set = counted
    rekey.encrypt(url, crypto.cipher_for([key]), batch_size=batch_size)


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_a_killed_walk_leaves_each_row_old_or_new_and_a_rerun_finishes(
    database_url,
):
    rows = seed(database_url, [], 40)
    before = {row_id: row for row_id, row in raw_rows_of(database_url).items()}
    batch, die_after = 6, 23  # in the fourth batch, three of its rows written
    context = multiprocessing.get_context("spawn")
    child = context.Process(
        target=walk_then_die, args=(database_url, KEY_OLD, die_after, batch)
    )
    child.start()
    child.join(DEADLINE)
    assert child.exitcode == -signal.SIGKILL

    cipher = crypto.cipher_for([KEY_OLD])
    states = collections.Counter()
    for row_id, row in raw_rows_of(database_url).items():
        states[row_state(cipher, before[row_id], row)] += 1
    committed = (die_after - 1) // batch * batch
    print(f"killed after {die_after} rows written in batches of {batch}: "
          f"{dict(states)}; committed batches held {committed} rows")
    assert states == {"new": committed, "old": len(rows) - committed}

    tally = rekey.encrypt(database_url, cipher, batch_size=batch)
    print(f"rerun: {tally.describe('encrypted')}")
    assert (tally.rewritten, tally.already, tally.failed) == (
        len(rows) - committed, committed, 0,
    )
    store = SqlAlchemyStore(database_url, encryption_keys=[KEY_OLD])
    try:
        assert_no_secret_in_table(store, stored_values(rows))
        found = {t.get_id(): t.get_access_token() for t in store.get_tokens()}
        assert found == {row[1]: row[3] for row in rows}
    finally:
        store.close()


def raw_rows_of(url: str) -> dict:
    store = SqlAlchemyStore(url, encryption_keys=[])
    try:
        return raw_rows(store)
    finally:
        store.close()


def row_state(cipher, old: dict, now: dict) -> str:
    """"old" (untouched), "new" (every value encrypted, same plain values)."""
    if now == old:
        return "old"
    for name in SECRET_FIELDS:
        if not now[name].startswith(crypto.MARKER):
            return f"half-written ({name} plain)"
        if cipher.decrypt(now[name]) != old[name]:
            return f"wrong {name}"
    unchanged = set(old) - set(SECRET_FIELDS)
    if any(now[column] != old[column] for column in unchanged):
        return "other columns changed"
    return "new"


# -- with the application running --------------------------------------------


def app_worker(url, keys, owned, barrier, stop, results) -> None:
    """One application process: refreshes and finds its own users' tokens."""
    store = SqlAlchemyStore(url, encryption_keys=keys)
    last = {user: (refresh, access) for user, _, refresh, access in owned}
    counts, problems = collections.Counter(), []
    barrier.wait(DEADLINE)
    n = 0
    while n < MIN_OPERATIONS or not stop.is_set():
        user, row_id, refresh, _ = owned[n % len(owned)]
        try:
            if n % 3 == 2:
                counts["finds"] += 1
                problem = check_find(store, user, last[user])
                if problem:
                    problems.append(f"{user}: {problem}")
            else:
                access, expires = new_value("access"), str(4102444800000 + n)
                if n % 3 == 0:  # the SDK's refresh: the whole token, by id
                    token = full_token(user, refresh, access, expires, row_id)
                else:  # only what Zoho's refresh answer carries
                    token = OAuthToken(id=row_id, access_token=access)
                    token.set_expires_in(expires)
                store.save_token(token)
                counts["saves"] += 1
                last[user] = (refresh, access)
        except SDKException as err:
            problems.append(f"{user}: {type(err).__name__}: {err}")
        n += 1
    store.close()
    results.put({"counts": dict(counts), "problems": problems, "last": last})


def check_find(store, user: str, expected) -> str:
    found = store.find_token(OAuthToken(user_signature=UserSignature(user)))
    if found is None:
        return "not found"
    if (found.get_refresh_token(), found.get_access_token()) != expected:
        return "not the last save"
    if found.get_client_secret() != SECRET:
        return "wrong client secret"
    return ""


def with_the_app_running(url: str, app_keys, rows, walk):
    """Run the walk while WORKERS processes save and find; their outcomes."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS + 1)
    stop, results = context.Event(), context.Queue()
    workers = [
        context.Process(
            target=app_worker,
            args=(url, app_keys, rows[w::WORKERS], barrier, stop, results),
        )
        for w in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(DEADLINE)  # every worker has its store and starts now
        tally = walk()
    finally:
        stop.set()
    outcomes = []
    try:
        for _ in workers:
            outcomes.append(results.get(timeout=DEADLINE))
    except queue.Empty:
        pytest.fail(f"{WORKERS - len(outcomes)} workers did not report")
    for worker in workers:
        worker.join(DEADLINE)
    return tally, outcomes


def summary(label, tally, outcomes, verb) -> tuple:
    counts = collections.Counter()
    problems = []
    for outcome in outcomes:
        counts.update(outcome["counts"])
        problems += outcome["problems"]
    print(f"\n{label}: workers={WORKERS} saves={counts['saves']} "
          f"finds={counts['finds']} problems={len(problems)}; "
          f"walk: {tally.describe(verb)}")
    return counts, problems


def assert_rows_hold_the_last_saves(url: str, keys, outcomes) -> None:
    last = {}
    for outcome in outcomes:
        last.update(outcome["last"])
    store = SqlAlchemyStore(url, encryption_keys=keys)
    try:
        found = {}
        for token in store.get_tokens():
            name = token.get_user_signature().get_name()
            found[name] = (token.get_refresh_token(), token.get_access_token())
            assert token.get_client_secret() == SECRET
        lost = [user for user, state in last.items() if found.get(user) != state]
        print(f"rows={len(found)} holding their last save: {len(found) - len(lost)}")
        assert lost == [] and len(found) == len(last)
        values = {v for state in last.values() for v in state} | {SECRET}
        assert_no_secret_in_table(store, sorted(values))
    finally:
        store.close()


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_encrypting_a_plain_table_while_the_app_runs_loses_nothing(
    backend, database_url
):
    rows = seed(database_url, [], WORKERS * USERS_PER_WORKER)
    cipher = crypto.cipher_for([KEY_OLD])
    tally, outcomes = with_the_app_running(
        database_url, [KEY_OLD], rows,
        lambda: rekey.encrypt(database_url, cipher, batch_size=5),
    )
    counts, problems = summary(f"{backend} encrypt", tally, outcomes, "encrypted")
    assert problems == [], problems[:3]
    assert counts["saves"] >= WORKERS * MIN_OPERATIONS * 2 // 3
    assert tally.failed == 0 and tally.rows == len(rows)
    assert_rows_hold_the_last_saves(database_url, [KEY_OLD], outcomes)


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_rotating_the_key_while_the_app_runs_loses_nothing(backend, database_url):
    rows = seed(database_url, [KEY_OLD], WORKERS * USERS_PER_WORKER)
    both = [KEY_NEW, KEY_OLD]
    tally, outcomes = with_the_app_running(
        database_url, both, rows,
        lambda: rekey.rotate(database_url, crypto.cipher_for(both), batch_size=5),
    )
    counts, problems = summary(f"{backend} rotate-key", tally, outcomes,
                               "re-encrypted")
    assert problems == [], problems[:3]
    assert counts["saves"] >= WORKERS * MIN_OPERATIONS * 2 // 3
    assert tally.failed == 0 and tally.rows == len(rows)
    # The old key can go: every row opens under the new one alone.
    assert_rows_hold_the_last_saves(database_url, [KEY_NEW], outcomes)
