"""Database failures reach the caller the SDK's way, and never leak a secret."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import DBAPIError
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import SchemaError, SqlAlchemyStore, TokenRecord
from sqlstore.errors import SqlStoreError

ACCESS = "1000.access.KNOWNVALUE0a1b2c3d4e5f"
REFRESH = "1000.refresh.KNOWNVALUE6f7e8d9c0b1a"
GRANT = "1000.grant.KNOWNVALUE1122334455"
SECRET = "KNOWN-CLIENT-SECRET-99887766"
PASSWORD = "KNOWN-DB-PASSWORD-5544"
KNOWN_VALUES = (ACCESS, REFRESH, GRANT, SECRET, PASSWORD)

# Nothing listens on port 1 of the loopback address: connections are refused
# at once, which is a database failure the store must report.
UNREACHABLE = {
    "sqlite-file": "sqlite:////nonexistent-directory/for/tokens.db",
    "postgresql": f"postgresql+psycopg2://app:{PASSWORD}@127.0.0.1:1/tokens",
    "mariadb": f"mysql+pymysql://app:{PASSWORD}@127.0.0.1:1/tokens",
}


def known_token() -> OAuthToken:
    token = OAuthToken(
        client_id="1000.CLIENT",
        client_secret=SECRET,
        grant_token=GRANT,
        refresh_token=REFRESH,
        access_token=ACCESS,
        user_signature=UserSignature("ada@example.com:1"),
    )
    token.set_expires_in("4102444800000")
    return token


@pytest.fixture
def broken_store(backend, tmp_path):
    if backend == "sqlite-memory":
        # Memory cannot be unplugged; a missing table is its failure.
        return SqlAlchemyStore("sqlite://", create_schema=False)
    return SqlAlchemyStore(UNREACHABLE[backend])


CALLS = {
    "find_token": lambda store: store.find_token(known_token()),
    "save_token": lambda store: store.save_token(known_token()),
    "delete_token": lambda store: store.delete_token("some-id"),
    "get_tokens": lambda store: store.get_tokens(),
    "delete_tokens": lambda store: store.delete_tokens(),
    "find_token_by_id": lambda store: store.find_token_by_id("some-id"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_failures_are_token_store_errors_with_the_cause(broken_store, call, caplog):
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SDKException) as caught:
            CALLS[call](broken_store)
    error = caught.value
    assert error.code == "TOKEN_STORE"
    assert isinstance(error, SqlStoreError)
    assert isinstance(error.cause, (DBAPIError, SchemaError))
    assert error.__cause__ is not None
    assert_no_known_value(str(error), repr(error), caplog.text)


def test_a_failed_save_is_logged_at_error(broken_store, caplog):
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SDKException):
            broken_store.save_token(known_token())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].name.startswith("sqlstore")
    assert "token not saved" in errors[0].getMessage()
    assert_no_known_value(caplog.text)


def test_a_database_without_the_table_says_to_upgrade(tmp_path):
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'empty.db'}", create_schema=False)
    with pytest.raises(SDKException, match="sqlstore upgrade"):
        store.find_token_by_id("x")


def test_reprs_and_printed_urls_hide_secrets():
    store = SqlAlchemyStore(UNREACHABLE["postgresql"])
    record = TokenRecord(
        id="x", access_token=ACCESS, refresh_token=REFRESH, client_secret=SECRET
    )
    texts = [repr(store), repr(store.repository), repr(record), str(record)]
    print(texts)
    assert_no_known_value(*texts)
    assert "***" in repr(store)


def assert_no_known_value(*texts: str) -> None:
    for text in texts:
        for value in KNOWN_VALUES:
            assert value not in text
