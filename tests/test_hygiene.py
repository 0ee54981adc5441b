"""No secret in anything sqlstore lets out, and no value that escapes its quotes.

The error paths run with known token values, a known client secret and a
known database password, while every logger logs at DEBUG (SQLAlchemy's
engine included, which is what ``echo="debug"`` turns on), warnings are
recorded and stdout/stderr are captured at the file-descriptor level. Then
all of it, with the text, repr and traceback of every exception raised and
the repr of every sqlstore object involved, is searched for any 16
characters in a row of a known value.

The second half feeds values built to break out of a quoted string or a
LIKE pattern into every field and into ids, and checks that nothing but
their own row changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import traceback
import unicodedata
import uuid
import warnings

import pytest
from backends import server_url_or_skip
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import EngineOptions, SqlAlchemyStore, SqlStoreError, migrate
from sqlstore.model import oauthtoken
from sqlstore.scenario import run as run_sdk_process
from sqlstore.standin import ZohoStandIn

ACCESS = "1000.ACCESS.b81f0c5e94d7a3e2.QhV7rK2mZp9WxL4t"
REFRESH = "1000.REFRESH.6d2e9a1fc4b7083e.Jd3Fh6Gk1Pq5Ws9E"
GRANT = "1000.GRANT.f3a9c1e7d2b50864.Tn4Yc8Lr2Xm6Bv0Q"
SECRET = "client-SECRET-Wf5Dk9Rp3Zs7Ng1Mc4JxQe8Ua2"
PASSWORD = "db-PASSWORD-Ya8Ke2Vu6Ho0Ct4LiPz"
KNOWN = (ACCESS, REFRESH, GRANT, SECRET, PASSWORD)
WINDOW = 16
USER = "ada@example.com:7000001"
CLIENT = "1000.HYGIENECLIENT"

# Nothing listens on port 1 of the loopback address.
UNREACHABLE = {
    "sqlite-file": "sqlite:////nonexistent-directory/for/tokens.db",
    "postgresql": f"postgresql+psycopg2://app:{PASSWORD}@127.0.0.1:1/tokens",
    "mariadb": f"mysql+pymysql://app:{PASSWORD}@127.0.0.1:1/tokens",
}


def known_token(**overrides) -> OAuthToken:
    token = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        grant_token=GRANT,
        refresh_token=REFRESH,
        access_token=ACCESS,
        redirect_url="https://app.example.com/oauth/callback",
        user_signature=UserSignature(USER),
        api_domain="https://www.zohoapis.com",
    )
    token.set_expires_in("4102444800000")
    for name, value in overrides.items():
        getattr(token, f"set_{name}")(value)
    return token


def count_rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM oauthtoken")).scalar()


# -- capturing everything -------------------------------------------------------


class _Collect(logging.Handler):
    """Keeps every record, formatted or not, with its arguments and traceback."""

    def __init__(self):
        super().__init__(level=1)
        self.lines: list[tuple[str, str]] = []
        self.levels: dict[str, int] = {}

    def emit(self, record):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - the SDK logs logger.error(MESSAGE, exc)
            message = f"{record.msg!r} % {record.args!r}"
        parts = [record.name, record.levelname, message, repr(record.args)]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        if record.stack_info:
            parts.append(record.stack_info)
        key = f"{record.name}:{record.levelname}"
        self.lines.append((f"log record {key}", " | ".join(parts)))
        self.levels[key] = self.levels.get(key, 0) + 1


class Captured:
    def __init__(self, handler: _Collect):
        self.handler = handler
        self.texts: list[tuple[str, str]] = []
        self.errors = 0

    def exception(self, err: BaseException) -> None:
        """Text, repr and arguments of the error and all it was caused by."""
        self.errors += 1
        seen, stack = set(), [err]
        while stack:
            item = stack.pop()
            if not isinstance(item, BaseException) or id(item) in seen:
                continue
            seen.add(id(item))
            name = type(item).__name__
            self.texts += [
                (f"str({name})", str(item)),
                (f"repr({name})", repr(item)),
                (f"{name}.args", repr(item.args)),
            ]
            # What a traceback shows: the cause, and the context unless
            # suppressed (raise ... from None); and what errors carry.
            stack += [
                item.__cause__,
                None if item.__suppress_context__ else item.__context__,
                getattr(item, "cause", None),
                getattr(item, "orig", None),
            ]
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        self.texts.append((f"traceback of {type(err).__name__}", text))

    def objects(self, *objects) -> None:
        for item in objects:
            name = type(item).__name__
            self.texts += [(f"repr({name})", repr(item)), (f"str({name})", str(item))]

    @property
    def log_lines(self) -> list[str]:
        return [line for _, line in self.handler.lines]

    def all_text(self) -> list[tuple[str, str]]:
        return self.handler.lines + self.texts


@contextlib.contextmanager
def everything_captured(capfd):
    """Every logger at DEBUG into one handler; warnings and fds recorded."""
    handler = _Collect()
    manager = logging.Logger.manager
    changed = []

    def open_up(logger):
        changed.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.disabled = False

    named = [
        "sqlalchemy",
        "sqlalchemy.engine",
        "sqlalchemy.engine.Engine",
        "sqlalchemy.pool",
        "sqlalchemy.dialects",
        "alembic",
        "sqlstore",
        "SDKLogger",
        "urllib3",
    ]
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in named]
    loggers += [
        logger
        for logger in manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
        and (logger.level > logging.DEBUG or logger.disabled)
    ]
    for logger in loggers:
        open_up(logger)
    # The SDK logs a failed save as logger.error(MESSAGE, exception), which
    # no formatter can format: pytest's log capture would raise TypeError
    # from inside the SDK. Its records come to this handler alone.
    sdk_logger = logging.getLogger("SDKLogger")
    sdk_propagates = sdk_logger.propagate
    sdk_logger.propagate = False
    hosts = [logging.getLogger()] + [
        logger
        for logger in manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for host in hosts:
        host.addHandler(handler)
    captured = Captured(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield captured
    finally:
        for host in hosts:
            host.removeHandler(handler)
        sdk_logger.propagate = sdk_propagates
        for logger, level, disabled in reversed(changed):
            logger.setLevel(level)
            logger.disabled = disabled
    captured.texts += [("warning", str(w.message)) for w in caught]
    out, err = capfd.readouterr()
    captured.texts += [("stdout", out), ("stderr", err)]
    sys.stdout.write(out)


def leaks(texts, secrets=KNOWN) -> list[str]:
    """Where WINDOW characters in a row of a secret appear, with context.

    texts: (where it came from, text) pairs, or bare texts.
    """
    found = []
    for secret in secrets:
        windows = {
            secret[i : i + WINDOW] for i in range(max(1, len(secret) - WINDOW + 1))
        }
        for item in texts:
            where, piece = item if isinstance(item, tuple) else ("text", item)
            for window in windows:
                at = piece.find(window)
                if at >= 0:
                    context = piece[max(0, at - 80) : at + 80]
                    found.append(f"{secret[:12]}... in {where}: {context!r}")
                    break
    return found


def assert_clean(captured: Captured, secrets=KNOWN) -> None:
    print(
        f"searched {len(captured.handler.lines)} log records, "
        f"{len(captured.texts)} other texts, {captured.errors} errors; "
        f"records by logger: {captured.handler.levels}"
    )
    found = sorted(set(leaks(captured.all_text(), secrets)))
    assert not found, f"{len(found)} secret values found:\n" + "\n".join(found[:6])


def test_the_search_sees_every_channel(capfd):
    """A value sent down each channel the tests watch is found there."""
    quiet = logging.getLogger("sqlstore.hygiene.quiet")
    quiet.setLevel(logging.ERROR)
    values = [f"canary-{n}-{uuid.uuid4().hex}" for n in range(7)]
    with everything_captured(capfd) as captured:
        logging.getLogger("sqlalchemy.engine.Engine").debug("Row %r", (values[0],))
        quiet.debug("%s", values[1])
        sdk = logging.getLogger("SDKLogger")
        sdk.error("Exception in saving tokens", values[2])  # as the SDK does
        print(values[3])
        os.write(2, values[4].encode())
        warnings.warn(values[5])
        try:
            raise RuntimeError("outer") from ValueError(values[6])
        except RuntimeError as err:
            captured.exception(err)
    assert quiet.level == logging.ERROR
    missed = [v for v in values if not leaks(captured.all_text(), [v])]
    print(f"{len(values) - len(missed)} of {len(values)} canaries found")
    assert not missed


# -- databases of a test's own, for DDL -----------------------------------------


class Sandbox:
    """An empty database (or PostgreSQL schema) no other test uses."""

    def __init__(self, url: str, cleanup=None):
        self.url = url
        self.stores: list[SqlAlchemyStore] = []
        self._cleanup = cleanup

    def store(self, create_schema=False) -> SqlAlchemyStore:
        made = SqlAlchemyStore(self.url, create_schema=create_schema)
        self.stores.append(made)
        return made

    def close(self) -> None:
        for made in self.stores:
            made.close()
        if self._cleanup is not None:
            self._cleanup()


@pytest.fixture
def sandbox(backend, tmp_path):
    if backend == "sqlite-file":
        box = Sandbox(f"sqlite:///{tmp_path / 'sandbox.db'}")
    elif backend == "sqlite-memory":
        box = Sandbox("sqlite://")
    else:
        base = make_url(server_url_or_skip(backend))
        name = f"sqlstore_hyg_{uuid.uuid4().hex[:10]}"
        if backend == "postgresql":
            admin = create_engine(base, isolation_level="AUTOCOMMIT")
            create = f'CREATE SCHEMA "{name}"'
            drop = f'DROP SCHEMA "{name}" CASCADE'
            url = base.update_query_dict({"options": f"-csearch_path={name}"})
        else:
            server = base.set(database=None)
            admin = create_engine(server, isolation_level="AUTOCOMMIT")
            create = (
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
            drop = f"DROP DATABASE `{name}`"
            url = base.set(database=name)
        with admin.connect() as conn:
            conn.execute(text(create))

        def cleanup():
            with admin.connect() as conn:
                conn.execute(text(drop))
            admin.dispose()

        box = Sandbox(url.render_as_string(hide_password=False), cleanup)
    yield box
    box.close()


def read_only_store(backend, database_url) -> SqlAlchemyStore:
    """A store on the database, which refuses its writes (a replica, say)."""
    if backend == "sqlite-memory":
        store = SqlAlchemyStore(database_url)
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA query_only = ON")
        return store
    if backend == "sqlite-file":
        path = make_url(database_url).database
        return SqlAlchemyStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    setting = {
        "postgresql": {"options": "-c default_transaction_read_only=on"},
        "mariadb": {"init_command": "SET SESSION TRANSACTION READ ONLY"},
    }[backend]
    url = make_url(database_url).update_query_dict(setting)
    return SqlAlchemyStore(url.render_as_string(hide_password=False))


# -- refused input ---------------------------------------------------------------

REFUSED = {
    "access_token too long": {"access_token": ACCESS + "x" * 3000},
    "refresh_token too long": {"refresh_token": REFRESH * 60},
    "grant_token too long": {"grant_token": GRANT + "🚀" * 2100},
    "client_secret too long": {"client_secret": SECRET + "s" * 2100},
    "access_token with NUL": {"access_token": ACCESS + "\x00"},
    "refresh_token with NUL": {"refresh_token": "\x00" + REFRESH},
    "grant_token with NUL": {"grant_token": GRANT[:20] + "\x00" + GRANT[20:]},
    "client_secret with NUL": {"client_secret": SECRET + "\x00"},
    "access_token with a lone surrogate": {"access_token": ACCESS + "\ud800"},
    "refresh_token with a lone surrogate": {"refresh_token": "\udfff" + REFRESH},
    "client_secret with a lone surrogate": {"client_secret": SECRET + "\udc80"},
    "id too long": {"id": "i" * 256},
    "empty id": {"id": ""},
    "id of the wrong type": {"id": 7},
    "access_token of the wrong type": {"access_token": ACCESS.encode()},
    "user name too long": {"user_signature": UserSignature("u" * 321)},
    "expires_in not milliseconds": {"expires_in": "tomorrow"},
    "expires_in negative": {"expires_in": -5},
}


def test_refused_saves_and_lookups_let_out_no_secret(store, capfd):
    with everything_captured(capfd) as captured:
        for overrides in REFUSED.values():
            token = known_token(**overrides)
            for method in (store.save_token, store.find_token):
                with pytest.raises((ValueError, TypeError)) as refused:
                    method(token)
                captured.exception(refused.value)
            captured.objects(store, store.repository)
        for bad in (None, "a token", {"access_token": ACCESS}, [REFRESH]):
            with pytest.raises(TypeError) as refused:
                store.save_token(bad)
            captured.exception(refused.value)
    print(f"{len(REFUSED)} refused tokens, rows={count_rows(store)}")
    assert count_rows(store) == 0
    assert_clean(captured)


# -- a working store -------------------------------------------------------------


def test_a_working_store_logs_no_secret_even_at_debug(backend, database_url, capfd):
    """Every logger at DEBUG, as echo="debug" would set SQLAlchemy's."""
    if backend == "postgresql":
        # The suite's server trusts local connections: a password is
        # accepted, and the pool logs each connection with its DSN.
        url = make_url(database_url).set(password=PASSWORD)
        database_url = url.render_as_string(hide_password=False)
    with everything_captured(capfd) as captured:
        store = SqlAlchemyStore(database_url)
        token = known_token()
        store.save_token(token)
        probes = [
            OAuthToken(id=token.get_id()),
            OAuthToken(user_signature=UserSignature(USER)),
            OAuthToken(access_token=ACCESS),
            OAuthToken(client_id=CLIENT, client_secret="x", grant_token=GRANT),
            OAuthToken(client_id=CLIENT, client_secret="x", refresh_token=REFRESH),
        ]
        for probe in probes:
            assert store.find_token(probe) is probe
        assert store.find_token_by_id(token.get_id()) is not None
        assert len(store.get_tokens()) == 1
        captured.objects(store, store.repository, store.engine)
        captured.objects(*store.repository.all())
        assert store.delete_token(token.get_id()) is True
        store.close()
    assert_clean(captured)


# -- database failures -----------------------------------------------------------

CALLS = {
    "find_token": lambda store: store.find_token(known_token()),
    "save_token": lambda store: store.save_token(known_token()),
    "delete_token": lambda store: store.delete_token("some-id"),
    "get_tokens": lambda store: store.get_tokens(),
    "delete_tokens": lambda store: store.delete_tokens(),
    "find_token_by_id": lambda store: store.find_token_by_id("some-id"),
}


def call_everything(store, captured: Captured, calls=CALLS) -> list[str]:
    """Each call must fail the SDK's way; returns the messages."""
    messages = []
    for name, call in calls.items():
        with pytest.raises(SDKException) as failed:
            call(store)
        assert failed.value.code == "TOKEN_STORE", name
        captured.exception(failed.value)
        messages.append(str(failed.value))
    captured.objects(store, store.repository, store.engine)
    return messages


def unreachable_urls(backend) -> list[str]:
    if backend == "sqlite-memory":
        return []
    urls = [UNREACHABLE[backend]]
    if backend == "mariadb":
        # The live server, with a password it refuses.
        live = make_url(server_url_or_skip("mariadb")).set(password=PASSWORD)
        urls.append(live.render_as_string(hide_password=False))
    return urls


# An in-memory database cannot be unreachable: the other three only.
@pytest.mark.parametrize("backend", ["sqlite-file", "postgresql", "mariadb"])
def test_an_unreachable_database_lets_out_no_secret(backend, capfd):
    urls = unreachable_urls(backend)
    with everything_captured(capfd) as captured:
        for url in urls:
            store = SqlAlchemyStore(url, options=EngineOptions(connect_timeout=2))
            messages = call_everything(store, captured)
            if "@" in url:
                assert "***" in repr(store)
            print(messages[1])
            store.close()
            with pytest.raises(SqlStoreError) as failed:
                SqlAlchemyStore(url, create_schema=True)
            captured.exception(failed.value)
    assert_clean(captured)


def test_a_missing_or_dropped_table_lets_out_no_secret(sandbox, capfd):
    with everything_captured(capfd) as captured:
        store = sandbox.store(create_schema=False)
        missing = call_everything(store, captured)
        migrate.upgrade(store.engine)
        token = known_token()
        store.save_token(token)
        captured.objects(token.get_id())
        migrate.downgrade(store.engine, "base")
        dropped = call_everything(store, captured)
    print(missing[0], dropped[1], sep="\n")
    assert all("sqlstore upgrade" in message for message in missing + dropped)
    assert_clean(captured)


def test_a_save_refused_by_a_unique_key_lets_out_no_secret(store, capfd):
    first = known_token()
    store.save_token(first)
    before = store.repository.find_by_id(first.get_id())
    # Another user claiming the same refresh token: the database says no.
    other = known_token(
        user_signature=UserSignature("bob@example.com:7000001"),
        access_token=ACCESS[::-1],
        grant_token=None,
    )
    with everything_captured(capfd) as captured:
        with pytest.raises(SDKException) as failed:
            store.save_token(other)
        captured.exception(failed.value)
        captured.objects(store, store.repository)
    after = store.repository.find_by_id(first.get_id())
    print(f"rows={count_rows(store)}: {failed.value}")
    assert count_rows(store) == 1 and after == before
    assert_clean(captured, KNOWN + (ACCESS[::-1],))


def test_a_read_only_database_lets_out_no_secret(backend, database_url, capfd):
    store = read_only_store(backend, database_url)
    writes = {name: CALLS[name] for name in ("save_token", "delete_tokens")}
    with everything_captured(capfd) as captured:
        messages = call_everything(store, captured, writes)
        assert store.find_token(known_token()) is None
    store.close()
    print(*messages, sep="\n")
    errors = [line for line in captured.log_lines if "token not saved" in line]
    assert errors, "the lost save was not logged"
    assert_clean(captured)


def test_a_constraint_that_echoes_the_row_lets_out_no_secret(backend, sandbox, capfd):
    """PostgreSQL's constraint errors carry the failing row in their DETAIL."""
    store = sandbox.store(create_schema=False)
    migrate.upgrade(store.engine)
    with store.engine.begin() as conn:
        if backend.startswith("sqlite"):
            conn.exec_driver_sql(
                "CREATE TRIGGER hygiene_refuses BEFORE INSERT ON oauthtoken "
                "BEGIN SELECT RAISE(ABORT, 'refused by policy'); END"
            )
        else:
            conn.exec_driver_sql(
                "ALTER TABLE oauthtoken ADD CONSTRAINT hygiene_refuses "
                "CHECK (access_token IS NULL)"
            )
    with everything_captured(capfd) as captured:
        with pytest.raises(SDKException) as failed:
            store.save_token(known_token())
        captured.exception(failed.value)
    print(failed.value)
    assert count_rows(store) == 0
    assert_clean(captured)


BAD_IDS = [None, 7, 1.5, b"some-id", "", "i" * 256, "a\x00b", "\udc80", [ACCESS]]


def test_bad_ids_let_out_no_secret(store, capfd):
    token = known_token()
    store.save_token(token)
    refused = 0
    with everything_captured(capfd) as captured:
        for bad in BAD_IDS:
            for method in (store.find_token_by_id, store.delete_token):
                with pytest.raises((TypeError, ValueError)) as failed:
                    method(bad)
                captured.exception(failed.value)
                refused += 1
            if bad is None:
                continue  # a token without an id is what the SDK saves
            with_bad_id = known_token(id=bad)
            for method in (store.save_token, store.find_token):
                with pytest.raises((TypeError, ValueError)) as failed:
                    method(with_bad_id)
                captured.exception(failed.value)
                refused += 1
    print(f"{refused} calls refused, rows={count_rows(store)}")
    assert count_rows(store) == 1
    assert_clean(captured)


# -- through the SDK, against the loopback stand-in -------------------------------


@pytest.fixture
def zoho(monkeypatch, tmp_path):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.chdir(tmp_path)  # the SDK may write files into the cwd
    with ZohoStandIn(client_secret=SECRET) as server:
        yield server


def test_a_failed_grant_exchange_lets_out_no_secret(store, zoho, capfd):
    with everything_captured(capfd) as captured:
        with pytest.raises(Exception) as failed:
            run_sdk_process(
                database_url=None,
                zoho_url=zoho.url,
                client_id=zoho.client_id,
                client_secret=SECRET,
                grant_token=GRANT,
                store=store,
            )
        captured.exception(failed.value)
        captured.objects(store, store.repository, zoho)
    counts = zoho.counts
    print(f"{type(failed.value).__name__}: {failed.value}; stand-in: {counts}")
    assert counts["grant"] == 0 and counts["rejected"] == 1
    assert count_rows(store) == 0
    assert_clean(captured)


def test_a_save_lost_during_the_sdk_lifecycle_lets_out_no_secret(
    backend, database_url, zoho, capfd
):
    store = read_only_store(backend, database_url)
    grant = zoho.new_grant_token("ada@example.com")
    with everything_captured(capfd) as captured:
        outcome = run_sdk_process(
            database_url=None,
            zoho_url=zoho.url,
            client_id=zoho.client_id,
            client_secret=SECRET,
            grant_token=grant,
            store=store,
        )
        captured.objects(store, store.repository, outcome)
    issued = Initializer.get_initializer().token
    secrets = (grant, SECRET, issued.get_access_token(), issued.get_refresh_token())
    assert all(secrets), "the SDK holds no exchanged tokens"
    ours = [
        line
        for line in captured.log_lines
        if line.startswith("SDKLogger") and "TokenStoreError" in line
    ]
    print(f"outcome={outcome}; stand-in: {zoho.counts}")
    print("the SDK logged of ours:", *ours, sep="\n  ")
    assert zoho.counts["grant"] == 1 and outcome.records == 2
    assert any("token not saved" in line for line in captured.log_lines)
    store.close()
    assert_clean(captured, secrets)


# -- the sqlstore command ------------------------------------------------------------

FULL_TOKEN = re.compile(r"1000\.[0-9a-f]{16,}")
QUERY_PASSWORD = {
    "postgresql": f"postgresql+psycopg2://app@127.0.0.1:1/tokens?password={PASSWORD}",
    "mariadb": f"mysql+pymysql://app@127.0.0.1:1/tokens?password={PASSWORD}",
}


def launch(args, cwd, env_url=None) -> subprocess.Popen:
    environment = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        environment.pop(name, None)
    environment.pop("SQLSTORE_DATABASE_URL", None)
    if env_url:
        environment["SQLSTORE_DATABASE_URL"] = env_url
    return subprocess.Popen(
        [sys.executable, "-m", "sqlstore.cli", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def live_url(backend):
    """The suite's server with PASSWORD in its URL, or None if it is down."""
    try:
        url = server_url_or_skip(backend)
    except (pytest.skip.Exception, pytest.fail.Exception):
        return None
    url = make_url(url).set(password=PASSWORD)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def command_runs(tmp_path_factory):
    """Every command at once (each takes a second or two to start)."""
    pg, my = UNREACHABLE["postgresql"], UNREACHABLE["mariadb"]
    commands = {
        "userinfo: upgrade": (["upgrade", "--url", pg], None),
        "userinfo: -v current": (["-v", "current", "--url", my], None),
        "userinfo: downgrade, from env": (["downgrade", "base"], pg),
        "userinfo: demo": (["demo", "--url", pg], None),
        "userinfo: --help, env set": (["upgrade", "--help"], my),
        "query: -v upgrade": (
            ["-v", "upgrade", "--url", QUERY_PASSWORD["postgresql"]],
            None,
        ),
        "query: current, from env": (["current"], QUERY_PASSWORD["mariadb"]),
    }
    # The suite's PostgreSQL trusts local connections, so it accepts the
    # password and the commands succeed; the suite's MariaDB refuses it.
    for backend in ("postgresql", "mariadb"):
        url = live_url(backend)
        if url is not None:
            commands[f"live {backend}: -v upgrade"] = (
                ["-v", "upgrade", "--url", url],
                None,
            )
    cwd = tmp_path_factory.mktemp("commands")
    started = {name: launch(args, cwd, env) for name, (args, env) in commands.items()}
    results = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=180)
        results[name] = (process.returncode, out, err)
    return results


def check_outputs(results) -> None:
    found = []
    for name, (status, out, err) in sorted(results.items()):
        print(f"[{name}] exit {status}: {(out + err).strip()[:300]}")
        found += [f"[{name}] {leak}" for leak in leaks([out, err])]
        assert not FULL_TOKEN.search(out + err), name
        if status != 0:
            lines = err.strip().splitlines()
            assert status == 1 and len(lines) == 1, (name, err)
            assert lines[0].startswith("error:"), (name, err)
    print(f"{len(results)} commands")
    assert not found, "\n".join(found)


def test_the_command_hides_passwords_given_in_the_url(command_runs):
    runs = {k: v for k, v in command_runs.items() if k.startswith("userinfo")}
    check_outputs(runs)
    for name, (status, out, err) in runs.items():
        if "--help" in name:
            assert status == 0
        else:
            assert status == 1 and "***" in err, name
    assert "***" in runs["userinfo: demo"][1]  # "Database: ..." on stdout


def test_the_command_hides_passwords_given_as_url_parameters(command_runs):
    """libpq and PyMySQL both take the password as a query parameter too."""
    runs = {k: v for k, v in command_runs.items() if k.startswith("query")}
    check_outputs(runs)
    assert all(status == 1 for status, _, _ in runs.values())
    shown = [repr(SqlAlchemyStore(url)) for url in QUERY_PASSWORD.values()]
    print(shown)
    assert not leaks(shown)


@pytest.mark.parametrize("backend_name", ["postgresql", "mariadb"])
def test_the_command_on_a_live_server_hides_its_password(command_runs, backend_name):
    server_url_or_skip(backend_name)
    name = f"live {backend_name}: -v upgrade"
    check_outputs({name: command_runs[name]})
    status, out, err = command_runs[name]
    if backend_name == "postgresql" and status == 0:
        assert "***" in out
    if backend_name == "mariadb":
        assert status == 1 and "***" in err


# -- injection ------------------------------------------------------------------------

PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DELETE FROM oauthtoken; --",
    "'); DROP TABLE oauthtoken; --",
    '" OR ""="',
    "\\'; UPDATE oauthtoken SET access_token='x'; -- ",
    "\\\\' OR 1=1 #",
    "' || (SELECT access_token FROM oauthtoken LIMIT 1) || '",
    "$$; DELETE FROM oauthtoken; $$",
    "E'\\x27' OR TRUE",
    "*/ OR 1=1 /*",
    "`; TRUNCATE oauthtoken; `",
    "%",
    "_",
    "%%",
    "\\%",
    "\\_",
    "a%",
    "%a",
    "[a-z]%",
    "%' ESCAPE '\\",
    "%s",
    "%(id)s",
    ":id",
    "?",
    "\u02bc OR 1=1 --",
    "\uff07 OR 1=1 --",
    "\u2019; DELETE FROM oauthtoken; --",
    "\x1a' OR 1=1",
    "x'\r\n; DELETE FROM oauthtoken; --",
]
WILDCARD_PROBES = ["%", "_", "%%", "%example.com%", "___%", "' OR '1'='1", "*", ".*"]


def normalized_name(name: str) -> str:
    """README: user names are stored NFC, trimmed and lower-cased."""
    return unicodedata.normalize("NFC", name).strip().lower()


def table_rows(store) -> dict[str, dict]:
    """Every row, every column, read through the table's types."""
    with store.engine.connect() as conn:
        return {
            row["id"]: dict(row) for row in conn.execute(select(oauthtoken)).mappings()
        }


def hostile_token(payload: str, n: int) -> OAuthToken:
    token = OAuthToken(
        id=payload,
        client_id=payload,
        client_secret=payload,
        grant_token=payload + "|g",
        refresh_token=payload + "|r",
        access_token=payload + "|a",
        redirect_url=payload,
        user_signature=UserSignature(payload),
        api_domain=payload,
    )
    token.set_expires_in(str(4102444800000 + n))
    return token


def test_hostile_values_change_nothing_but_their_own_row(store):
    names = [normalized_name(p) for p in PAYLOADS]
    assert len(set(names)) == len(names) == len(set(PAYLOADS))
    bystanders = []
    for n in range(4):
        token = known_token(
            user_signature=UserSignature(f"user{n}@example.com:1"),
            access_token=f"{ACCESS}.{n}",
            refresh_token=f"{REFRESH}.{n}",
            grant_token=f"{GRANT}.{n}",
        )
        store.save_token(token)
        bystanders.append(token.get_id())
    untouched = table_rows(store)
    saved = 0
    for n, payload in enumerate(PAYLOADS):
        before = table_rows(store)
        token = hostile_token(payload, n)
        store.save_token(token)
        assert token.get_id() == payload
        saved += 1
        after = table_rows(store)
        row = after.pop(payload)
        assert after == before, f"saving {payload!r} changed another row"
        for column in ("user_name", "client_id", "api_domain", "client_secret"):
            expected = normalized_name(payload) if column == "user_name" else payload
            assert row[column] == expected, column
    assert len(table_rows(store)) == len(untouched) + saved
    found = 0
    for n, payload in enumerate(PAYLOADS):
        probes = [
            OAuthToken(id=payload),
            OAuthToken(user_signature=UserSignature(payload)),
            OAuthToken(access_token=payload + "|a"),
            OAuthToken(
                client_id=payload,
                client_secret="x",
                grant_token=payload + "|g",
                api_domain=payload,
            ),
            OAuthToken(
                client_id=payload, client_secret="x", refresh_token=payload + "|r"
            ),
        ]
        for probe in probes:
            assert store.find_token(probe) is probe
            assert probe.get_id() == payload, (payload, probe.get_id())
            assert probe.get_client_id() == payload
            found += 1
        stored = store.find_token_by_id(payload)
        assert stored.get_redirect_url() == payload
        assert stored.get_access_token() == payload + "|a"
        # Narrowed by another payload's client id: no row at all.
        for other in ("%", "' OR '1'='1", "_"):
            if other != payload:
                probe = OAuthToken(
                    client_id=other, client_secret="x", refresh_token=payload + "|r"
                )
                assert store.find_token(probe) is None, (payload, other)
                found += 1
    for payload in PAYLOADS:
        before = table_rows(store)
        store.save_token(OAuthToken(id=payload, access_token=payload + "|a2"))
        after = table_rows(store)
        assert after.pop(payload)["access_token"] == payload + "|a2"
        del before[payload]
        assert after == before, f"saving {payload!r} changed another row"
    users = {normalized_name(p): p for p in PAYLOADS}
    for wildcard in WILDCARD_PROBES:
        by_id = store.find_token_by_id(wildcard)
        assert (by_id and by_id.get_id()) == (
            wildcard if wildcard in PAYLOADS else None
        )
        probe = OAuthToken(user_signature=UserSignature(wildcard))
        store.find_token(probe)
        assert probe.get_id() == users.get(normalized_name(wildcard)), wildcard
        probe = OAuthToken(access_token=wildcard)
        assert store.find_token(probe) is None
        if wildcard not in PAYLOADS:
            assert store.delete_token(wildcard) is False
    assert {i: table_rows(store)[i] for i in bystanders} == untouched
    for payload in reversed(PAYLOADS):
        before = len(table_rows(store))
        assert store.delete_token(payload) is True
        after = table_rows(store)
        assert len(after) == before - 1 and payload not in after
    print(
        f"payloads={len(PAYLOADS)} saved={saved} found={found} "
        f"rows left={count_rows(store)}"
    )
    assert table_rows(store) == untouched
