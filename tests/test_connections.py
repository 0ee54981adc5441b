"""How the store holds its connections: reused between calls, bounded,
given back on close, recycled, and never shared with a forked child."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest
from sqlalchemy import event

from sqlstore import EngineOptions, SqlAlchemyStore
from tests.test_contract import make_token

pytestmark = pytest.mark.usefixtures("backend")


def checkouts(engine) -> list:
    """A list that grows by one at each checkout from the engine's pool."""
    seen = []
    event.listen(engine, "checkout", lambda *_: seen.append(1))
    return seen


@pytest.fixture
def server_or_file(backend):
    if backend == "sqlite-memory":
        pytest.skip("in-memory SQLite has one connection and no pool to spare")


@pytest.mark.usefixtures("server_or_file")
def test_lone_statements_reuse_one_connection(store):
    token = make_token()
    store.save_token(token)
    seen = checkouts(store.repository.autocommit_engine)
    for _ in range(50):
        assert store.find_token_by_id(token.get_id()) is not None
    print(f"pool checkouts over 50 finds: {len(seen)}")
    assert len(seen) <= 1


@pytest.mark.usefixtures("server_or_file")
def test_threads_park_at_most_pool_size_and_close_returns_them(database_url):
    store = SqlAlchemyStore(database_url, options=EngineOptions(pool_size=2))
    token = make_token()
    store.save_token(token)
    barrier = threading.Barrier(6)
    failures = []

    def finds():
        barrier.wait()
        for _ in range(30):
            if store.find_token_by_id(token.get_id()) is None:
                failures.append("missed")

    threads = [threading.Thread(target=finds) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pool = store.repository.autocommit_engine.pool
    held = pool.checkedout()
    store.close()
    print(f"held between calls: {held}; after close: {pool.checkedout()}")
    assert failures == []
    assert held <= 2
    assert pool.checkedout() == 0


@pytest.mark.usefixtures("server_or_file")
def test_a_connection_past_its_recycle_age_goes_back_to_the_pool(database_url):
    store = SqlAlchemyStore(database_url, options=EngineOptions(pool_recycle=0))
    token = make_token()
    store.save_token(token)
    seen = checkouts(store.repository.autocommit_engine)
    for _ in range(5):
        store.find_token_by_id(token.get_id())
    store.close()
    print(f"pool checkouts over 5 finds with recycle 0: {len(seen)}")
    assert len(seen) == 5


def _find_in_child(store, token_id, answers):
    connects = []
    engine = store.repository.autocommit_engine
    event.listen(engine, "connect", lambda *_: connects.append(1))
    found = store.find_token_by_id(token_id)
    answers.put((found.get_access_token() if found else None, len(connects)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_connects_afresh_and_the_parent_keeps_working(
    store, backend
):
    token = make_token()
    store.save_token(token)
    assert store.find_token_by_id(token.get_id()) is not None  # parks one
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    children = [
        context.Process(target=_find_in_child, args=(store, token.get_id(), answers))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    got = [answers.get(timeout=5) for _ in children]
    print(f"children's (answer, new connections): {got}, exit codes: "
          f"{[child.exitcode for child in children]}")
    # In-memory SQLite is the one connection, copied with the process.
    connects = 0 if backend == "sqlite-memory" else 1
    assert got == [(token.get_access_token(), connects)] * 3
    assert [child.exitcode for child in children] == [0, 0, 0]
    # Had a child used or closed the parent's connection, this would fail.
    for _ in range(5):
        assert store.find_token_by_id(token.get_id()) is not None
