"""The older SDKs' TokenStore contract, on every backend, with their tokens.

Runs with whichever of zcrmsdk 3.x, zohocrmsdk2-0 or zohocrmsdk2-1 the
environment holds (``nox -s legacy`` runs it once with each).
"""

from __future__ import annotations

import logging
import secrets

import pytest
from legacysdk import SDKException, configured_token, get, legacy, put, user
from sqlalchemy import select, text

from sqlstore import TokenRecord
from sqlstore.errors import SqlStoreError
from sqlstore.model import oauthtoken

CLIENT = "1000.CLIENTAPPONE"
SECRET = "client-secret-" + "s" * 28
ADA = "ada@example.com"
EXPIRES = "1767225600000"


def new_value(kind: str) -> str:
    return f"1000.{kind}.{secrets.token_hex(16)}"


@pytest.fixture
def store(database_url):
    made = legacy.LegacySqlAlchemyStore(database_url)
    yield made
    made.close()


def exchanged(grant=None, client=CLIENT, refresh=None):
    """A token as the SDK holds it right after a grant exchange."""
    token = configured_token(client, SECRET, grant=grant or new_value("grant"))
    put(token, "refresh_token", refresh or new_value("refresh"))
    put(token, "access_token", new_value("access"))
    put(token, "expires_in", EXPIRES)
    return token


def rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM oauthtoken")).scalar()


# -- get_token ------------------------------------------------------------------


def test_the_same_configured_grant_finds_the_saved_token(store):
    saved = exchanged()
    store.save_token(user(ADA), saved)
    again = configured_token(CLIENT, SECRET, grant=get(saved, "grant_token"))
    assert store.get_token(user(ADA), again) is again
    for name in ("id", "refresh_token", "access_token", "expires_in"):
        assert get(again, name) == get(saved, name), name
    assert get(again, "user_mail") == ADA


def test_a_refresh_token_finds_its_row(store):
    saved = exchanged()
    store.save_token(user(ADA), saved)
    probe = configured_token(CLIENT, SECRET, refresh=get(saved, "refresh_token"))
    assert store.get_token(user(ADA), probe) is probe
    assert get(probe, "access_token") == get(saved, "access_token")


def test_another_users_refresh_token_is_not_handed_out(store):
    saved = exchanged()
    store.save_token(user(ADA), saved)
    probe = configured_token(CLIENT, SECRET, refresh=get(saved, "refresh_token"))
    assert store.get_token(user("bob@example.com"), probe) is None
    assert get(probe, "access_token") is None


def test_an_unseen_grant_is_a_new_authorization_that_replaces_the_row(store):
    store.save_token(user(ADA), exchanged())
    fresh = configured_token(CLIENT, SECRET, grant=new_value("grant"))
    assert store.get_token(user(ADA), fresh) is None
    renewed = exchanged(grant=get(fresh, "grant_token"))
    store.save_token(user(ADA), renewed)
    print(f"rows={rows(store)}")
    assert rows(store) == 1
    probe = configured_token(CLIENT, SECRET, grant=get(fresh, "grant_token"))
    store.get_token(user(ADA), probe)
    assert get(probe, "refresh_token") == get(renewed, "refresh_token")


def test_an_outdated_configured_refresh_token_gets_the_stored_one(store):
    old_refresh = new_value("refresh")
    store.save_token(user(ADA), exchanged(refresh=old_refresh))
    renewed = exchanged()
    store.save_token(user(ADA), renewed)
    probe = configured_token(CLIENT, SECRET, refresh=old_refresh)
    assert store.get_token(user(ADA), probe) is probe
    assert get(probe, "refresh_token") == get(renewed, "refresh_token")


def test_the_client_app_narrows_the_match(store):
    store.save_token(user(ADA), exchanged(client="1000.OTHERAPP"))
    probe = configured_token(CLIENT, SECRET, refresh=new_value("refresh"))
    assert store.get_token(user(ADA), probe) is None


# -- save_token -----------------------------------------------------------------


def test_a_save_sets_the_row_id_and_user_on_the_token(store):
    token = exchanged()
    given_id = get(token, "id")
    store.save_token(user(ADA), token)
    with store.engine.connect() as conn:
        # Through the table's types: MySQL's VARBINARY keys are bytes raw.
        columns = select(oauthtoken.c.id, oauthtoken.c.user_name)
        stored = conn.execute(columns).one()
    print(f"given_id={given_id} stored_id={stored.id}")
    assert get(token, "id") == stored.id
    assert stored.user_name == ADA and get(token, "user_mail") == ADA


def test_an_id_the_sdk_chose_is_kept(store):
    token = exchanged()
    put(token, "id", "python_ada_standin_4f2e")
    store.save_token(user(ADA), token)
    assert get(token, "id") == "python_ada_standin_4f2e"
    found = store.get_token_by_id("python_ada_standin_4f2e", exchanged())
    assert get(found, "refresh_token") == get(token, "refresh_token")


def test_a_refresh_updates_the_row_in_place(store):
    token = exchanged()
    store.save_token(user(ADA), token)
    first_id = get(token, "id")
    put(token, "access_token", "1000.access.renewed")
    put(token, "expires_in", "1767229200000")
    store.save_token(user(ADA), token)
    found = store.get_token_by_id(first_id, exchanged())
    print(f"rows={rows(store)}")
    assert rows(store) == 1 and get(token, "id") == first_id
    assert get(found, "access_token") == "1000.access.renewed"
    assert get(found, "expires_in") == "1767229200000"


def test_two_users_and_two_client_apps_never_share_a_row(store):
    tokens = [
        (ADA, exchanged()),
        ("bob@example.com", exchanged()),
        (ADA, exchanged(client="1000.CLIENTAPPTWO")),
    ]
    for email, token in tokens:
        store.save_token(user(email), token)
    ids = {get(token, "id") for _, token in tokens}
    print(f"saves=3 rows={rows(store)} ids={len(ids)}")
    assert rows(store) == 3 and len(ids) == 3


# -- deleting, listing, by id ---------------------------------------------------


def test_delete_token_by_id_then_again(store, caplog):
    token = exchanged()
    store.save_token(user(ADA), token)
    assert store.delete_token(token) is True
    with caplog.at_level(logging.INFO, logger="sqlstore"):
        assert store.delete_token(token) is False
    assert "nothing deleted" in caplog.text and rows(store) == 0


def test_delete_token_without_an_id_finds_its_row(store):
    keep, drop = exchanged(), exchanged()
    store.save_token(user("bob@example.com"), keep)
    store.save_token(user(ADA), drop)
    probe = configured_token(CLIENT, SECRET, refresh=get(drop, "refresh_token"))
    put(probe, "user_mail", ADA)
    assert store.delete_token(probe) is True
    assert rows(store) == 1
    assert store.get_token_by_id(get(keep, "id"), exchanged()) is not None


def test_get_tokens_gives_full_sdk_tokens(store):
    saved = {f"user{n}@example.com": exchanged() for n in range(3)}
    for email, token in saved.items():
        store.save_token(user(email), token)
    listed = {get(token, "user_mail"): token for token in store.get_tokens()}
    assert set(listed) == set(saved)
    for email, token in saved.items():
        assert isinstance(listed[email], legacy.OAuthToken)
        for name in ("id", "client_id", "refresh_token", "access_token"):
            assert get(listed[email], name) == get(token, name), name


def test_delete_tokens_empties_the_table(store):
    for n in range(4):
        store.save_token(user(f"user{n}@example.com"), exchanged())
    assert store.delete_tokens() == 4 and rows(store) == 0


def test_get_token_by_id_fills_the_given_token_or_gives_none(store):
    token = exchanged()
    store.save_token(user(ADA), token)
    probe = configured_token(CLIENT, SECRET, refresh="1000.refresh.placeholder")
    assert store.get_token_by_id(get(token, "id"), probe) is probe
    assert get(probe, "refresh_token") == get(token, "refresh_token")
    assert store.get_token_by_id("no-such-id", exchanged()) is None


# -- the current family's rows --------------------------------------------------


def test_rows_are_shared_with_the_current_sdks_store(store):
    """Both adapters write one record shape to one table, through one core."""
    token = exchanged()
    store.save_token(user(ADA), token)
    found = store.repository.find(TokenRecord(user_name=ADA))
    assert found.refresh_token == get(token, "refresh_token")
    # A row as the current SDK (6.0 and later) saves it: e-mail:zgid, and
    # the data centre's domain.
    current = TokenRecord(
        user_name="bob@example.com:7000001",
        client_id=CLIENT,
        client_secret=SECRET,
        refresh_token=new_value("refresh"),
        access_token=new_value("access"),
        api_domain="https://www.zohoapis.com",
        expiry_time=int(EXPIRES),
    )
    row_id = store.repository.save(current)
    probe = configured_token(CLIENT, SECRET, refresh=current.refresh_token)
    assert store.get_token(user("bob@example.com"), probe) is probe
    assert get(probe, "id") == row_id
    put(probe, "access_token", "1000.access.refreshed")
    store.save_token(user("bob@example.com"), probe)
    kept = store.repository.find_by_id(row_id)
    print(f"rows={rows(store)} kept_user={kept.user_name}")
    assert rows(store) == 2
    assert kept.user_name == "bob@example.com:7000001"
    assert kept.api_domain == "https://www.zohoapis.com"
    assert kept.access_token == "1000.access.refreshed"


# -- bad input and failures -----------------------------------------------------


@pytest.mark.parametrize("bad", [None, "a token", 42])
def test_non_tokens_are_refused(store, bad):
    with pytest.raises(TypeError, match="OAuthToken"):
        store.save_token(user(ADA), bad)
    with pytest.raises(TypeError, match="OAuthToken"):
        store.get_token(user(ADA), bad)
    assert rows(store) == 0


@pytest.mark.parametrize("bad", [None, ADA])
def test_the_user_must_be_a_user_signature(store, bad):
    with pytest.raises(TypeError, match="UserSignature"):
        store.save_token(bad, exchanged())
    assert rows(store) == 0


def test_an_expiry_that_is_not_milliseconds_is_refused(store):
    token = exchanged()
    put(token, "expires_in", "tomorrow")
    with pytest.raises(ValueError, match="expires_in"):
        store.save_token(user(ADA), token)
    assert rows(store) == 0


UNREACHABLE = {
    "sqlite-file": "sqlite:////nonexistent-directory/for/tokens.db",
    "postgresql": "postgresql+psycopg2://app:KNOWN-PASSWORD-1@127.0.0.1:1/tokens",
    "mariadb": "mysql+pymysql://app:KNOWN-PASSWORD-1@127.0.0.1:1/tokens",
}


def test_database_failures_are_the_sdks_exception(backend):
    if backend == "sqlite-memory":
        broken = legacy.LegacySqlAlchemyStore("sqlite://", create_schema=False)
    else:
        broken = legacy.LegacySqlAlchemyStore(UNREACHABLE[backend])
    token = exchanged()
    secrets_held = [get(token, n) for n in ("refresh_token", "access_token")]
    with pytest.raises(SDKException) as raised:
        broken.save_token(user(ADA), token)
    error = raised.value
    print(f"code={error.code} message={error}")
    assert isinstance(error, SqlStoreError) and error.code == "TOKEN_STORE"
    assert error.cause is not None
    for value in [*secrets_held, SECRET, "KNOWN-PASSWORD-1"]:
        assert value not in str(error)
    assert "KNOWN-PASSWORD-1" not in repr(broken)
