"""The TokenStore contract, run on every backend with the SDK's own objects."""

from __future__ import annotations

import logging
import secrets
import uuid

import pytest
from sqlalchemy import text
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

CLIENT = "1000.CLIENTAPPONE"
SECRET = "client-secret-" + "s" * 28
DOMAIN = "https://www.zohoapis.com"


def new_value(kind: str) -> str:
    return f"1000.{kind}.{secrets.token_hex(16)}"


def make_token(
    user="ada@example.com:7000001",
    client=CLIENT,
    grant=None,
    refresh="new",
    access="new",
    expires="new",
    domain=DOMAIN,
    token_id=None,
) -> OAuthToken:
    """An SDK token as the SDK holds it after an exchange."""
    token = OAuthToken(
        client_id=client,
        client_secret=SECRET,
        grant_token=grant,
        refresh_token=new_value("refresh") if refresh == "new" else refresh,
        redirect_url="https://app.example.com/oauth/callback",
        id=token_id,
        access_token=new_value("access") if access == "new" else access,
        user_signature=UserSignature(user) if user is not None else None,
        api_domain=domain,
    )
    token.set_expires_in("4102444800000" if expires == "new" else expires)
    return token


def rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM oauthtoken")).scalar()


def assert_same_token(found: OAuthToken, saved: OAuthToken) -> None:
    for name in (
        "id",
        "client_id",
        "client_secret",
        "grant_token",
        "refresh_token",
        "access_token",
        "redirect_url",
        "api_domain",
        "expires_in",
    ):
        getter = f"get_{name}"
        assert getattr(found, getter)() == getattr(saved, getter)(), name
    assert found.get_user_signature().get_name() == (
        saved.get_user_signature().get_name().strip().lower()
    )


# -- the SDK's five ways in ------------------------------------------------------


def test_find_by_grant_token_fills_the_given_object(store):
    saved = make_token(grant=new_value("grant"))
    store.save_token(saved)
    probe = OAuthToken(
        client_id=CLIENT, client_secret=SECRET, grant_token=saved.get_grant_token()
    )
    assert store.find_token(probe) is probe
    assert_same_token(probe, saved)


def test_find_by_refresh_token(store):
    saved = make_token()
    store.save_token(saved)
    probe = OAuthToken(
        client_id=CLIENT, client_secret=SECRET, refresh_token=saved.get_refresh_token()
    )
    assert store.find_token(probe) is probe
    assert_same_token(probe, saved)


def test_find_by_access_token_alone(store):
    saved = make_token()
    store.save_token(saved)
    probe = OAuthToken(access_token=saved.get_access_token())
    assert store.find_token(probe) is probe
    assert_same_token(probe, saved)


def test_find_by_id_as_revoke_does(store):
    saved = make_token()
    store.save_token(saved)
    probe = OAuthToken(id=saved.get_id())
    assert store.find_token(probe) is probe
    assert_same_token(probe, saved)


def test_find_by_user_signature(store):
    saved = make_token()
    store.save_token(saved)
    probe = OAuthToken(user_signature=UserSignature("ada@example.com:7000001"))
    assert store.find_token(probe) is probe
    assert_same_token(probe, saved)


def test_client_id_narrows_a_user_lookup(store):
    store.save_token(make_token(client="1000.OTHERAPP"))
    probe = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        user_signature=UserSignature("ada@example.com:7000001"),
    )
    assert store.find_token(probe) is None


def test_a_miss_returns_none_and_leaves_the_token_alone(store):
    store.save_token(make_token())
    probe = OAuthToken(
        client_id=CLIENT, client_secret=SECRET, refresh_token=new_value("refresh")
    )
    assert store.find_token(probe) is None
    assert probe.get_id() is None and probe.get_access_token() is None


@pytest.mark.parametrize("name", ["", "   "])
def test_a_token_without_a_key_matches_no_row(store, name):
    store.save_token(make_token())
    store.save_token(make_token(user="bob@example.com:7000001"))
    probe = OAuthToken(user_signature=UserSignature(name))
    assert store.find_token(probe) is None
    assert probe.get_access_token() is None


def test_find_fills_only_what_the_token_lacks(store):
    saved = make_token()
    store.save_token(saved)
    probe = OAuthToken(
        client_id=CLIENT,
        client_secret="the caller's own secret",
        refresh_token=saved.get_refresh_token(),
    )
    store.find_token(probe)
    assert probe.get_client_secret() == "the caller's own secret"
    assert probe.get_access_token() == saved.get_access_token()


# -- saving -----------------------------------------------------------------------


def test_inserts_get_distinct_ids_set_on_the_object(store):
    saved = [make_token(user=f"user{n}@example.com:1") for n in range(12)]
    for token in saved:
        store.save_token(token)
    ids = {token.get_id() for token in saved}
    print(f"saves=12 distinct_ids={len(ids)} rows={rows(store)}")
    assert len(ids) == 12 and rows(store) == 12
    assert all(uuid.UUID(token_id) for token_id in ids)


CALLER_IDS = [
    "1",
    "10",
    "abc",
    "ABC",
    "abc ",
    "O'Brien'); DELETE FROM oauthtoken; --",
    "100%_like\\escape",
    "Zoë-Ñandú-東京-🚀",
]


def test_caller_ids_are_kept_exactly(store):
    for n, token_id in enumerate(CALLER_IDS):
        store.save_token(make_token(user=f"user{n}@example.com:1", token_id=token_id))
    print(f"ids={len(CALLER_IDS)} rows={rows(store)}")
    assert rows(store) == len(CALLER_IDS)
    for n, token_id in enumerate(CALLER_IDS):
        found = store.find_token_by_id(token_id)
        assert found.get_id() == token_id
        assert found.get_user_signature().get_name() == f"user{n}@example.com:1"


def test_update_by_id(store):
    token = make_token()
    store.save_token(token)
    first_id = token.get_id()
    token.set_access_token("1000.access.renewed")
    store.save_token(token)
    assert token.get_id() == first_id and rows(store) == 1
    assert store.find_token_by_id(first_id).get_access_token() == "1000.access.renewed"


def test_update_by_user_key_reuses_the_row_and_its_id(store):
    first = make_token()
    store.save_token(first)
    again = make_token(refresh=first.get_refresh_token())
    store.save_token(again)
    assert again.get_id() == first.get_id() and rows(store) == 1


def test_two_users_never_share_a_row(store):
    ada, bob = make_token(), make_token(user="bob@example.com:7000001")
    store.save_token(ada)
    store.save_token(bob)
    assert rows(store) == 2 and ada.get_id() != bob.get_id()
    probe = OAuthToken(user_signature=UserSignature("bob@example.com:7000001"))
    assert store.find_token(probe).get_access_token() == bob.get_access_token()


def test_one_user_with_two_client_apps_has_two_rows(store):
    one, two = make_token(), make_token(client="1000.CLIENTAPPTWO")
    store.save_token(one)
    store.save_token(two)
    assert rows(store) == 2
    for token in (one, two):
        found = store.find_token_by_id(token.get_id())
        assert found.get_refresh_token() == token.get_refresh_token()


def test_one_user_in_two_data_centres_has_two_rows(store):
    us, eu = make_token(), make_token(domain="https://www.zohoapis.eu")
    store.save_token(us)
    store.save_token(eu)
    assert rows(store) == 2
    assert store.find_token_by_id(us.get_id()).get_api_domain() == DOMAIN
    found_eu = store.find_token_by_id(eu.get_id())
    assert found_eu.get_access_token() == eu.get_access_token()


def test_a_new_authorization_replaces_the_refresh_token(store):
    store.save_token(make_token(grant=new_value("grant")))
    renewed = make_token(grant=new_value("grant"))
    store.save_token(renewed)
    assert rows(store) == 1
    stored = store.find_token_by_id(renewed.get_id())
    assert stored.get_refresh_token() == renewed.get_refresh_token()
    assert stored.get_grant_token() == renewed.get_grant_token()


def test_empty_fields_never_erase_stored_ones(store):
    token = make_token()
    store.save_token(token)
    # What Zoho's refresh answer leaves: a new access token, nothing else.
    refreshed = OAuthToken(id=token.get_id(), access_token="1000.access.after")
    refreshed.set_expires_in("1767229200000")
    store.save_token(refreshed)
    stored = store.find_token_by_id(token.get_id())
    assert stored.get_access_token() == "1000.access.after"
    assert stored.get_expires_in() == "1767229200000"
    assert stored.get_refresh_token() == token.get_refresh_token()
    assert stored.get_api_domain() == DOMAIN
    assert stored.get_user_signature().get_name() == "ada@example.com:7000001"


def test_an_unseen_grant_token_is_a_new_authorization(store):
    store.save_token(make_token(grant=new_value("grant")))
    fresh_grant = new_value("grant")
    probe = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        grant_token=fresh_grant,
        user_signature=UserSignature("ada@example.com:7000001"),
    )
    assert store.find_token(probe) is None
    assert store.find_token(
        OAuthToken(client_id=CLIENT, client_secret=SECRET, grant_token=fresh_grant)
    ) is None
    # The SDK exchanges it and saves the result: it replaces the user's row.
    exchanged = make_token(grant=fresh_grant)
    store.save_token(exchanged)
    assert rows(store) == 1
    again = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        grant_token=fresh_grant,
        user_signature=UserSignature("ada@example.com:7000001"),
    )
    assert store.find_token(again).get_refresh_token() == exchanged.get_refresh_token()


def test_user_names_ignore_case_and_surrounding_spaces(store):
    store.save_token(make_token(user="  Ada@Example.COM:7000001 "))
    again = make_token(user="ada@example.com:7000001")
    store.save_token(again)
    assert rows(store) == 1
    for name in ("ADA@EXAMPLE.COM:7000001", " ada@example.com:7000001"):
        probe = OAuthToken(user_signature=UserSignature(name))
        assert store.find_token(probe) is not None
    stored = store.find_token_by_id(again.get_id())
    assert stored.get_user_signature().get_name() == "ada@example.com:7000001"


HOSTILE = [
    "it's \"quoted\" `back`",
    "x'; DROP TABLE oauthtoken; --",
    "%_ LIKE '%' ESCAPE '\\'",
    "Zoë Ñandú 東京 🚀 \u202e",
    "tab\tnewline\nreturn\r",
    "t" * 700,
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_values_of_any_content_round_trip(store, value):
    token = make_token(
        user=f"{value[:200]}@example.com",
        client=value[:200],
        grant=value,
        refresh=value + "r",
        access=value + "a",
        domain=value[:200],
    )
    token.set_client_secret(value)
    token.set_redirect_url(value)
    store.save_token(token)
    found = store.find_token_by_id(token.get_id())
    assert_same_token(found, token)
    probe = OAuthToken(
        client_id=value[:200], client_secret=value, refresh_token=value + "r"
    )
    assert store.find_token(probe) is probe
    assert rows(store) == 1


def test_expires_in_round_trips_as_the_same_string(store):
    token = make_token(expires="1767225600123")
    store.save_token(token)
    assert store.find_token_by_id(token.get_id()).get_expires_in() == "1767225600123"


def test_an_absent_expiry_comes_back_as_none(store):
    token = make_token(expires=None)
    store.save_token(token)
    found = store.find_token_by_id(token.get_id())
    assert found.get_expires_in() is None


# -- deleting and listing -------------------------------------------------------


def test_delete_token_twice_is_not_an_error(store, caplog):
    token = make_token()
    store.save_token(token)
    assert store.delete_token(token.get_id()) is True
    with caplog.at_level(logging.INFO, logger="sqlstore"):
        assert store.delete_token(token.get_id()) is False
    assert "nothing deleted" in caplog.text
    assert store.find_token_by_id(token.get_id()) is None


def test_delete_token_leaves_other_rows(store):
    keep, drop = make_token(), make_token(user="bob@example.com:1")
    store.save_token(keep)
    store.save_token(drop)
    store.delete_token(drop.get_id())
    assert rows(store) == 1 and store.find_token_by_id(keep.get_id()) is not None


def test_get_tokens_returns_full_objects(store):
    saved = [make_token(user=f"user{n}@example.com:1") for n in range(3)]
    for token in saved:
        store.save_token(token)
    listed = {token.get_id(): token for token in store.get_tokens()}
    assert set(listed) == {token.get_id() for token in saved}
    for token in saved:
        assert isinstance(listed[token.get_id()], OAuthToken)
        assert_same_token(listed[token.get_id()], token)


def test_delete_tokens_removes_every_row(store):
    for n in range(5):
        store.save_token(make_token(user=f"user{n}@example.com:1"))
    assert store.delete_tokens() == 5
    assert rows(store) == 0 and store.get_tokens() == []


def test_find_token_by_id_gives_a_new_full_object_or_none(store):
    token = make_token()
    store.save_token(token)
    found = store.find_token_by_id(token.get_id())
    assert found is not token
    assert_same_token(found, token)
    assert store.find_token_by_id("no-such-id") is None


# -- bad input --------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, "a token", {"access_token": "x"}, 42])
@pytest.mark.parametrize("method", ["find_token", "save_token"])
def test_non_tokens_are_refused(store, method, bad):
    with pytest.raises(TypeError, match="OAuthToken"):
        getattr(store, method)(bad)
    assert rows(store) == 0


@pytest.mark.parametrize("method", ["find_token_by_id", "delete_token"])
@pytest.mark.parametrize(
    "bad, error",
    [(None, TypeError), (7, TypeError), (b"id", TypeError), ("", ValueError)],
)
def test_ids_must_be_non_empty_strings(store, method, bad, error):
    with pytest.raises(error, match="non-empty string"):
        getattr(store, method)(bad)


@pytest.mark.parametrize("field", ["access_token", "refresh_token", "client_secret"])
def test_a_value_longer_than_its_column_is_refused_by_name(store, field):
    token = make_token()
    getattr(token, f"set_{field}")("x" * 5000)
    with pytest.raises(ValueError, match=field):
        store.save_token(token)
    assert rows(store) == 0


def test_a_nul_character_is_refused_by_name(store):
    token = make_token(refresh="1000.refresh.\x00.nul")
    with pytest.raises(ValueError, match="refresh_token.*NUL"):
        store.save_token(token)
    assert rows(store) == 0


def test_an_expiry_that_is_not_milliseconds_is_refused(store):
    token = make_token(expires="tomorrow")
    with pytest.raises(ValueError, match="expires_in"):
        store.save_token(token)
    assert rows(store) == 0


# -- workers holding an older authorization ---------------------------------


def test_a_stale_refresh_does_not_undo_a_new_authorization(store):
    first = make_token(grant=new_value("grant"))
    store.save_token(first)
    # Another worker read the row, with its id and the first refresh token.
    stale = store.find_token_by_id(first.get_id())
    # The user authorizes again: a new grant, saved without an id.
    renewed = make_token(grant=new_value("grant"))
    store.save_token(renewed)
    # The stale worker's refresh: its old refresh token, a new access token.
    stale.set_access_token(new_value("access"))
    store.save_token(stale)
    row = store.find_token_by_id(first.get_id())
    kept = row.get_refresh_token() == renewed.get_refresh_token()
    print(f"rows={rows(store)} new_refresh_token_kept={kept}")
    assert rows(store) == 1
    assert row.get_refresh_token() == renewed.get_refresh_token()
    assert row.get_grant_token() == renewed.get_grant_token()
    assert row.get_access_token() == renewed.get_access_token()
    again = OAuthToken(
        client_id=CLIENT,
        client_secret=SECRET,
        grant_token=renewed.get_grant_token(),
        user_signature=UserSignature("ada@example.com:7000001"),
    )
    assert store.find_token(again) is again


def test_an_unknown_caller_id_updates_the_users_row_and_takes_its_id(store):
    first = make_token()
    store.save_token(first)
    mine = make_token(token_id="my-app-id")
    store.save_token(mine)
    assert rows(store) == 1 and mine.get_id() == first.get_id()
    stored = store.find_token_by_id(first.get_id())
    assert stored.get_refresh_token() == mine.get_refresh_token()
