"""The Alembic migrations and the ``sqlstore.migrate`` API on every backend.

Backends: an SQLite file, in-memory SQLite (through the store's own
engine), PostgreSQL (``SQLSTORE_TEST_POSTGRES_URL``) and MariaDB
(``SQLSTORE_TEST_MYSQL_URL``). A server that does not answer is skipped,
unless ``SQLSTORE_REQUIRE_BACKENDS=1``, which turns the skip into a failure.

The server databases may be shared with other suites: every test starts
from an empty schema and puts back the revision it found when it ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Union

import pytest
from alembic import command
from backends import server_url_or_skip
from alembic.config import Config
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine

from sqlstore import migrate
from sqlstore.config import ENV_VAR, create_store_engine, mask_url
from sqlstore.errors import ConfigurationError, SchemaError
from sqlstore.migrate import VERSION_TABLE, SchemaStatus
from sqlstore.model import CLAIM_TABLE_NAME, Base, TABLE_NAME

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FIRST = "26072f260166"
HEAD = "d3d6549609e9"
REVISIONS = (FIRST, HEAD)

ALL_BACKENDS = ["sqlite-file", "sqlite-memory", "postgresql", "mariadb"]
# Backends another process can reach: not an in-memory database.
SHARED_BACKENDS = ["sqlite-file", "postgresql", "mariadb"]

INDEXES = {
    "ix_oauthtoken_access_token_digest",
    "ix_oauthtoken_grant_token_digest",
    "ix_oauthtoken_updated_at",
}
UNIQUES = {
    "uq_oauthtoken_user_name_client_id_api_domain",
    "uq_oauthtoken_refresh_token_digest",
}


# ------------------------------------------------------------------ backends


@dataclass
class Database:
    """One backend's database, empty when a test gets it."""

    name: str
    url: str
    engine: Engine  # for looking at the schema; also an Engine target
    target: Union[str, Engine]  # what the tests hand to sqlstore.migrate

    def tables(self) -> set:
        return set(inspect(self.engine).get_table_names())

    def execute(self, sql: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql))


def _empty(db: Database) -> None:
    """Drop what the migrations made, going through them where possible."""
    if migrate.current(db.target) is not None:
        migrate.downgrade(db.target, "base")
    tables = db.tables()
    for name in (CLAIM_TABLE_NAME, TABLE_NAME):  # a test that broke off
        if name in tables:
            db.execute(f"DROP TABLE {name}")
    if VERSION_TABLE in tables:
        db.execute(f"DROP TABLE {VERSION_TABLE}")


def _open(name: str, tmp_path: pathlib.Path) -> Database:
    if name == "sqlite-memory":
        engine = create_store_engine("sqlite://")
        return Database(name, "sqlite://", engine, engine)
    if name == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'tokens.db'}"
    else:
        url = server_url_or_skip(name)
    return Database(name, url, create_store_engine(url), url)


def _found_revision(db: Database) -> Optional[str]:
    """The revision to put back afterwards; refuse a table we cannot."""
    found = migrate.schema_state(db.target)
    if found.status in (SchemaStatus.UNVERSIONED, SchemaStatus.UNKNOWN_REVISION):
        pytest.fail(
            f"{mask_url(db.url)} holds a token table this suite cannot put "
            f"back ({found.describe()}); use a database of its own",
            pytrace=False,
        )
    return found.current


@contextlib.contextmanager
def _database(name: str, tmp_path: pathlib.Path) -> Iterator[Database]:
    """The backend's database, emptied; its revision is put back after."""
    database = _open(name, tmp_path)
    found = _found_revision(database)
    _empty(database)
    try:
        yield database
    finally:
        _empty(database)
        if found is not None:
            migrate.upgrade(database.target, found)
        database.engine.dispose()


@pytest.fixture(params=ALL_BACKENDS)
def db(request, tmp_path):
    with _database(request.param, tmp_path) as database:
        yield database


@pytest.fixture(params=SHARED_BACKENDS)
def shared_db(request, tmp_path):
    with _database(request.param, tmp_path) as database:
        yield database


# ------------------------------------------------------------------- helpers


def _environment(url: str) -> Dict[str, str]:
    """This environment with the checkout importable and the URL set."""
    env = dict(os.environ)
    env[ENV_VAR] = url
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p
    )
    return env


def _run(args: List[str], cwd: pathlib.Path, url: str, **kw):
    """Run a fresh interpreter and wait for it."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_environment(url),
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def _alembic(*args: str, url: str):
    result = _run(["-m", "alembic", *args], REPO_ROOT, url)
    assert result.returncode == 0, result.stderr
    return result


def _changes_made(engine: Engine) -> List[str]:
    """Statements that change something, collected as the engine runs them."""
    seen: List[str] = []

    def collect(conn, cursor, statement, params, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", collect)
    return seen


def _closed_port() -> int:
    # A port just freed on the loopback address: nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------ upgrade et al.


def test_the_scripts_have_one_head():
    assert migrate.head_revision() == HEAD


def test_upgrade_creates_the_table_at_head(db):
    before = migrate.schema_state(db.target)
    assert before.status is SchemaStatus.NO_TABLE
    assert before.pending == REVISIONS

    assert migrate.upgrade(db.target) == HEAD

    assert {TABLE_NAME, CLAIM_TABLE_NAME} <= db.tables()
    after = migrate.schema_state(db.target)
    assert after.status is SchemaStatus.AT_HEAD and after.is_current
    assert after.pending == ()


def test_the_table_has_the_model_s_names(db):
    migrate.upgrade(db.target)
    inspector = inspect(db.engine)
    for name in (TABLE_NAME, CLAIM_TABLE_NAME):
        columns = {c["name"] for c in inspector.get_columns(name)}
        assert columns == set(Base.metadata.tables[name].columns.keys())
    indexes = {i["name"] for i in inspector.get_indexes(TABLE_NAME)}
    assert INDEXES <= indexes
    uniques = {u["name"] for u in inspector.get_unique_constraints(TABLE_NAME)}
    assert uniques == UNIQUES
    primary = inspector.get_pk_constraint(TABLE_NAME)
    assert primary["constrained_columns"] == ["id"]


def test_check_passes_right_after_upgrade(db):
    migrate.upgrade(db.target)
    migrate.check(db.target)


def test_check_reports_a_difference_in_one_line(db):
    migrate.upgrade(db.target)
    db.execute("DROP INDEX ix_oauthtoken_updated_at" + _on_table(db))
    with pytest.raises(SchemaError) as raised:
        migrate.check(db.target)
    message = str(raised.value)
    assert "add_index ix_oauthtoken_updated_at" in message
    assert "\n" not in message


def _on_table(db: Database) -> str:
    return f" ON {TABLE_NAME}" if db.name == "mariadb" else ""


# Changes made behind Alembic's back, in each server's dialect.
DRIFTS = {
    ("postgresql", "modify_type"): (
        "ALTER TABLE oauthtoken ALTER COLUMN client_id TYPE VARCHAR(100)"
    ),
    ("mariadb", "modify_type"): (
        "ALTER TABLE oauthtoken MODIFY client_id VARCHAR(200) NOT NULL DEFAULT ''"
    ),
    ("postgresql", "modify_default"): (
        "ALTER TABLE oauthtoken ALTER COLUMN client_id SET DEFAULT 'x'"
    ),
    ("mariadb", "modify_default"): (
        "ALTER TABLE oauthtoken ALTER COLUMN client_id SET DEFAULT 'x'"
    ),
}


@pytest.mark.parametrize("name, change", sorted(DRIFTS))
def test_check_sees_column_types_and_defaults(name, change, tmp_path):
    # On MariaDB this is the VARBINARY column turned back into VARCHAR.
    with _database(name, tmp_path) as database:
        migrate.upgrade(database.target)
        database.execute(DRIFTS[name, change])
        with pytest.raises(SchemaError, match=f"{change} oauthtoken.client_id"):
            migrate.check(database.target)


def test_check_refuses_a_database_behind_head(db):
    with pytest.raises(SchemaError, match="not up to date"):
        migrate.check(db.target)


def test_downgrade_to_base_drops_the_table_and_upgrade_works_again(db):
    migrate.upgrade(db.target)
    assert migrate.downgrade(db.target, "base") is None
    assert TABLE_NAME not in db.tables()
    assert migrate.schema_state(db.target).status is SchemaStatus.NO_TABLE

    assert migrate.upgrade(db.target) == HEAD
    migrate.check(db.target)


def test_downgrade_steps_back_one_revision_by_default(db):
    migrate.upgrade(db.target)
    assert migrate.downgrade(db.target) == FIRST
    assert CLAIM_TABLE_NAME not in db.tables()
    columns = {c["name"] for c in inspect(db.engine).get_columns(TABLE_NAME)}
    assert not {"lease_owner", "lease_until"} & columns
    assert migrate.downgrade(db.target) is None
    assert TABLE_NAME not in db.tables()


def test_the_lease_revision_keeps_the_rows_it_finds(db):
    migrate.upgrade(db.target, FIRST)
    db.execute(
        "INSERT INTO oauthtoken (id, client_id, api_domain, created_at, "
        "updated_at) VALUES ('kept', '', '', '2026-01-01', '2026-01-01')"
    )
    migrate.upgrade(db.target)
    migrate.check(db.target)
    migrate.downgrade(db.target, FIRST)
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT COUNT(*) FROM oauthtoken")).scalar()
    assert rows == 1


def test_upgrade_at_head_changes_nothing(db):
    assert migrate.upgrade(db.engine) == HEAD
    changes = _changes_made(db.engine)

    assert migrate.upgrade(db.engine) == HEAD
    assert changes == []
    assert migrate.current(db.engine) == HEAD


def test_current_before_and_after(db):
    assert migrate.current(db.target) is None
    migrate.upgrade(db.target)
    assert migrate.current(db.target) == HEAD
    migrate.downgrade(db.target, "base")
    assert migrate.current(db.target) is None


def test_a_connection_target_commits_its_own_work(db):
    with db.engine.connect() as conn:
        assert migrate.upgrade(conn) == HEAD
        assert not conn.in_transaction()
    assert migrate.current(db.engine) == HEAD


def test_the_caller_s_transaction_is_left_to_the_caller(db):
    with db.engine.connect() as conn:
        with conn.begin():
            migrate.upgrade(conn)
            assert conn.in_transaction()
    assert migrate.current(db.engine) == HEAD


@pytest.mark.parametrize("name", ["sqlite-file", "postgresql"])
def test_a_rolled_back_caller_transaction_takes_the_table_along(name, tmp_path):
    # Where DDL is transactional the whole upgrade is one unit of work.
    with _database(name, tmp_path) as database:
        with database.engine.connect() as conn:
            transaction = conn.begin()
            migrate.upgrade(conn)
            transaction.rollback()
        assert TABLE_NAME not in database.tables()
        assert migrate.current(database.target) is None


def test_upgrade_logs_what_it_did_with_the_url_masked(db, caplog):
    caplog.set_level(logging.INFO, logger="sqlstore.migrate")
    migrate.upgrade(db.target)
    migrate.upgrade(db.target)
    shown = mask_url(db.url)
    messages = [
        r.getMessage() for r in caplog.records if r.name == "sqlstore.migrate"
    ]
    assert f"schema upgraded from base to {HEAD} on {shown}" in messages
    assert f"schema of {shown} already at {HEAD}" in messages


# ---------------------------------------------------------- state and errors


def test_a_table_made_without_alembic_is_unversioned():
    engine = create_store_engine("sqlite://")
    Base.metadata.create_all(engine)
    state = migrate.schema_state(engine)
    assert state.status is SchemaStatus.UNVERSIONED
    assert "no revision recorded" in state.describe()
    with pytest.raises(SchemaError, match="no revision recorded"):
        migrate.upgrade(engine)


def test_a_revision_from_a_newer_sqlstore_is_unknown():
    engine = create_store_engine("sqlite://")
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00f'"))
    state = migrate.schema_state(engine)
    assert state.status is SchemaStatus.UNKNOWN_REVISION
    assert state.current == "f00f"
    with pytest.raises(SchemaError, match="f00f"):
        migrate.upgrade(engine)


def test_a_target_of_another_kind_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="int"):
        migrate.upgrade(42)


def test_an_unknown_revision_is_a_schema_error():
    with pytest.raises(SchemaError, match="nosuchrevision"):
        migrate.upgrade(create_store_engine("sqlite://"), "nosuchrevision")


def test_a_failure_names_the_database_but_not_its_password():
    url = f"postgresql+psycopg2://app:Sup3rSecret@127.0.0.1:{_closed_port()}/x"
    with pytest.raises(SchemaError) as raised:
        migrate.upgrade(url)
    message = str(raised.value)
    assert "Sup3rSecret" not in message
    assert "app:***@127.0.0.1" in message
    assert "\n" not in message


def test_the_default_url_is_the_environment_s(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv(ENV_VAR, url)
    assert migrate.upgrade() == HEAD
    assert migrate.current(url) == HEAD
    assert migrate.downgrade(None, "base") is None


# ------------------------------------------------------ several processes


RACE = """
import sys, time
from sqlstore import migrate
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
print(migrate.upgrade())
"""


def test_concurrent_upgrades_all_reach_head(shared_db, tmp_path):
    # Started together, the processes meet in the lock: one creates the
    # table, the others find it at head.
    start = str(time.time() + 2)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, start],
            cwd=tmp_path,
            env=_environment(shared_db.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [worker.communicate(timeout=120) for worker in workers]
    for worker, (out, err) in zip(workers, results):
        assert worker.returncode == 0, err
        assert out.strip() == HEAD
    migrate.check(shared_db.url)


def test_threads_migrating_different_databases_take_turns(tmp_path):
    # Alembic's run state is global to the process; without turns the
    # threads would run each other's migrations.
    urls = [f"sqlite:///{tmp_path / f'thread{i}.db'}" for i in range(6)]
    start = threading.Barrier(len(urls))
    failures: List[BaseException] = []

    def cycle(url: str) -> None:
        start.wait()
        try:
            for _ in range(3):
                migrate.upgrade(url)
                migrate.check(url)
                migrate.downgrade(url, "base")
        except BaseException as err:  # reported below, in the test's thread
            failures.append(err)

    threads = [threading.Thread(target=cycle, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []


def test_a_fresh_interpreter_migrates_through_the_python_api(shared_db, tmp_path):
    # No alembic.ini in the working directory: the API finds its scripts.
    code = (
        "from sqlstore import migrate\n"
        "print(migrate.upgrade())\n"
        "migrate.check()\n"
        "print(migrate.schema_state().describe())\n"
    )
    result = _run(["-c", code], tmp_path, shared_db.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [HEAD, f"at head {HEAD}"]
    assert migrate.current(shared_db.url) == HEAD


# -------------------------------------------------------- the alembic command


def test_the_alembic_command_line(shared_db):
    _alembic("upgrade", "head", url=shared_db.url)
    assert migrate.current(shared_db.url) == HEAD
    _alembic("check", url=shared_db.url)
    _alembic("downgrade", "base", url=shared_db.url)
    assert TABLE_NAME not in shared_db.tables()


def test_alembic_check_fails_on_a_difference(tmp_path):
    url = f"sqlite:///{tmp_path / 'drift.db'}"
    migrate.upgrade(url)
    engine = create_store_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_oauthtoken_grant_token_digest"))
    engine.dispose()
    result = _run(["-m", "alembic", "check"], REPO_ROOT, url)
    assert result.returncode != 0
    assert "ix_oauthtoken_grant_token_digest" in result.stderr


def test_an_x_url_argument_wins_over_the_environment(tmp_path):
    chosen = f"sqlite:///{tmp_path / 'chosen.db'}"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    _alembic("-x", f"url={chosen}", "upgrade", "head", url=other)
    assert migrate.current(chosen) == HEAD
    assert migrate.current(other) is None


@pytest.mark.parametrize(
    "url, expected",
    [
        ("mysql+pymysql://root@127.0.0.1/unused", "VARBINARY(1020)"),
        ("mysql+pymysql://root@127.0.0.1/unused", "CHARSET=utf8mb4"),
        ("mysql+pymysql://root@127.0.0.1/unused", "DATETIME(6)"),
        ("postgresql+psycopg2://postgres@127.0.0.1/unused", "VARCHAR(255)"),
        ("sqlite:///unused.db", "CREATE INDEX ix_oauthtoken_updated_at"),
    ],
)
def test_offline_mode_writes_the_sql_without_connecting(url, expected):
    result = _alembic("-x", f"url={url}", "upgrade", "head", "--sql", url=url)
    assert "CREATE TABLE oauthtoken" in result.stdout
    assert expected in result.stdout
    assert f"CREATE TABLE {VERSION_TABLE}" in result.stdout


# ------------------------------------------------------------ autogenerate


def test_autogenerate_writes_a_working_first_revision(tmp_path):
    # A copy of the scripts without their revision: autogenerate must then
    # write the whole table, with our column types imported and rendered.
    scripts = tmp_path / "migrations"
    shutil.copytree(
        REPO_ROOT / "migrations",
        scripts,
        ignore=shutil.ignore_patterns("__pycache__", "*_*.py"),
    )
    cfg = Config()
    cfg.set_main_option("script_location", str(scripts))
    engine = create_store_engine("sqlite://")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message="first", autogenerate=True)
    (written,) = (scripts / "versions").glob("*_first.py")
    source = written.read_text()
    assert "import sqlstore.types" in source
    assert "sqlstore.types.ExactString(length=255)" in source
    assert "sqlstore.types.UtcDateTime()" in source
    assert "mysql_collate='utf8mb4_bin'" in source

    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        command.check(cfg)
