"""Options and values refused where the mistake is made, by name."""

from __future__ import annotations

import pytest

from sqlstore import ConfigurationError, EngineOptions, SqlAlchemyStore
from sqlstore.record import mask_secret


@pytest.mark.parametrize(
    "field, value",
    [
        ("connect_timeout", -1),
        ("statement_timeout", 0),
        ("statement_timeout", "10"),
        ("busy_timeout", float("nan")),
        ("pool_size", 0),
        ("pool_size", 2.5),
        ("pool_recycle", -2),
        ("sqlite_synchronous", "YOLO"),
        ("leases", "yes"),
        ("lease_seconds", 0),
        ("lease_wait", -1),
        ("statement_timeout", 100_000),
        ("connect_timeout", 1e12),
        ("lease_seconds", 1e12),
    ],
)
def test_an_option_out_of_range_is_refused_by_name(field, value):
    with pytest.raises(ConfigurationError, match=f"EngineOptions.{field}"):
        EngineOptions(**{field: value})


def test_options_that_are_not_engine_options_are_refused():
    with pytest.raises(TypeError, match="sqlstore.EngineOptions, not dict"):
        SqlAlchemyStore("sqlite://", options={"pool_size": 3})


def test_an_empty_url_is_refused(monkeypatch):
    monkeypatch.delenv("SQLSTORE_DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="the database URL is empty"):
        SqlAlchemyStore("")
    monkeypatch.setenv("SQLSTORE_DATABASE_URL", "")
    with pytest.raises(ConfigurationError, match="SQLSTORE_DATABASE_URL is empty"):
        SqlAlchemyStore()


@pytest.mark.parametrize("value", ["abc", "wxyz", "12345", "s" * 23])
def test_a_short_secret_shows_its_length_alone(value):
    shown = mask_secret(value)
    assert shown == f"…({len(value)} chars)"
    assert value[:3] not in shown


def test_a_long_secret_shows_four_characters_and_a_fingerprint():
    token = "1000." + "a1b2" * 20
    shown = mask_secret(token)
    assert shown.startswith("1000…(85 chars, #") and token[4:] not in shown


def test_a_wait_shorter_than_the_lease_is_warned_of(caplog):
    EngineOptions(lease_seconds=10, lease_wait=2)
    assert "lease_wait (2 s) is shorter than lease_seconds (10 s)" in caplog.text
    caplog.clear()
    EngineOptions(lease_seconds=10, lease_wait=2, leases=False)
    EngineOptions()
    assert caplog.text == ""
