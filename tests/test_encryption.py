"""Tokens encrypted at rest, on every backend.

Stores are made with Fernet keys and fed real SDK tokens with known
values; then the table is read with raw SQL and every column of every row
is searched for each known value. The rest: what each lookup returns, what
a store meets in rows under a key it lacks (or with no keys at all), plain
rows read and encrypted by their next save, the length limit, the bad-key
errors, and that no key or secret gets out in logs, reprs or errors.
"""

from __future__ import annotations

import hashlib
import logging

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool
from test_hygiene import assert_clean, everything_captured, leaks
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore import ConfigurationError, SqlAlchemyStore, crypto, migrate, rekey
from sqlstore.scenario import run as run_sdk_process
from sqlstore.standin import ZohoStandIn

KEY_1 = crypto.generate_key()
KEY_2 = crypto.generate_key()
KEY_3 = crypto.generate_key()
KEYS = (KEY_1, KEY_2, KEY_3)

CLIENT = "1000.CRYPTCLIENT"
DOMAIN = "https://www.zohoapis.com"
SECRET = "crypt-client-SECRET-Hq3Vz8Lm2Rt6Wn0Pk5Yd"
SECRET_FIELDS = ("client_secret", "refresh_token", "access_token", "grant_token")


def values_for(n: int) -> dict:
    return {
        "client_secret": SECRET,
        "refresh_token": f"1000.REFRESH{n:04d}.9c2f6d1a8e4b7053.Xv4Mq8Tz",
        "access_token": f"1000.ACCESS{n:04d}.1b7e3a9f5c2d8064.Lp6Wr1Nc",
        "grant_token": f"1000.GRANT{n:04d}.e5a1c9b3f7d20486.Gk2Hs7Jd",
    }


def user_of(n: int) -> str:
    return f"crypt{n}@example.com:7000001"


def sdk_token(n: int, **overrides) -> OAuthToken:
    token = OAuthToken(
        client_id=CLIENT,
        redirect_url="https://app.example.com/oauth/callback",
        user_signature=UserSignature(user_of(n)),
        api_domain=DOMAIN,
        **values_for(n),
    )
    token.set_expires_in(str(4102444800000 + n))
    for name, value in overrides.items():
        getattr(token, f"set_{name}")(value)
    return token


def secrets_of(token) -> dict:
    return {name: getattr(token, f"get_{name}")() for name in SECRET_FIELDS}


def known_values(count: int) -> list:
    return sorted({v for n in range(count) for v in values_for(n).values()})


# -- stores on one database ------------------------------------------------


@pytest.fixture
def stores(database_url):
    """Makes stores with the given keys, all on the test's one database.

    In-memory SQLite is one connection: every store there shares it.
    """
    shared = None
    if database_url == "sqlite://":
        shared = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            hide_parameters=True,
        )
        migrate.upgrade(shared)
    made = []

    def make(keys=()) -> SqlAlchemyStore:
        if shared is not None:
            store = SqlAlchemyStore(engine=shared, encryption_keys=list(keys))
        else:
            store = SqlAlchemyStore(database_url, encryption_keys=list(keys))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
    if shared is not None:
        shared.dispose()


def raw_cells(store) -> list:
    """Every column of every row, as text, read with plain SQL."""
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM oauthtoken").all()
    return [_text(value) for row in rows for value in row]


def raw_rows(store) -> dict:
    """id -> {column: text}, through plain SQL."""
    with store.engine.connect() as conn:
        result = conn.exec_driver_sql("SELECT * FROM oauthtoken")
        names = list(result.keys())
        rows = result.all()
    found = {}
    for row in rows:
        values = {name: _text(value) for name, value in zip(names, row)}
        found[values["id"]] = values
    return found


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):  # MySQL's VARBINARY
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def assert_no_secret_in_table(store, secrets) -> None:
    cells = raw_cells(store)
    found = [s for s in secrets if any(s in cell for cell in cells)]
    windows = leaks(cells, secrets)
    print(f"searched {len(cells)} cells for {len(secrets)} known values: "
          f"{len(found)} found whole, {len(windows)} by 16-character windows")
    assert found == [] and windows == []


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# -- what the table holds --------------------------------------------------


def test_the_table_holds_no_token_or_client_secret(stores):
    store = stores([KEY_1])
    tokens = [sdk_token(n) for n in range(3)]
    for token in tokens:
        store.save_token(token)
    # A refresh, saved as the SDK does, by id with a new access token.
    refreshed = sdk_token(0, id=tokens[0].get_id(), access_token="1000.NEWACCESS.77")
    store.save_token(refreshed)
    assert_no_secret_in_table(store, known_values(3) + ["1000.NEWACCESS.77"])

    rows = raw_rows(store)
    assert len(rows) == 3
    for token in tokens:
        row = rows[token.get_id()]
        for name in SECRET_FIELDS:
            assert row[name].startswith(crypto.MARKER), name
        # Lookups go through digests of the plain values, needing no key.
        assert row["refresh_token_digest"] == sha256(token.get_refresh_token())
        assert row["grant_token_digest"] == sha256(token.get_grant_token())
        # What stays plain: the ids, the user, client and data centre.
        assert row["user_name"] == user_of(tokens.index(token))
        assert row["client_id"] == CLIENT and row["api_domain"] == DOMAIN
    assert rows[tokens[0].get_id()]["access_token_digest"] == sha256(
        "1000.NEWACCESS.77"
    )


def test_every_lookup_finds_the_plain_values(stores):
    store = stores([KEY_1])
    saved = sdk_token(1)
    store.save_token(saved)
    expected = secrets_of(saved)
    values = values_for(1)
    probes = {
        "user": OAuthToken(user_signature=UserSignature(user_of(1))),
        "id": OAuthToken(id=saved.get_id()),
        "access": OAuthToken(access_token=values["access_token"]),
        "grant": OAuthToken(
            client_id=CLIENT, client_secret=SECRET, grant_token=values["grant_token"]
        ),
        "refresh": OAuthToken(
            client_id=CLIENT, client_secret=SECRET,
            refresh_token=values["refresh_token"],
        ),
    }
    for key, probe in probes.items():
        found = store.find_token(probe)
        assert found is probe, key
        assert secrets_of(found) == expected, key
        assert found.get_id() == saved.get_id(), key
    by_id = store.find_token_by_id(saved.get_id())
    assert secrets_of(by_id) == expected
    assert [secrets_of(t) for t in store.get_tokens()] == [expected]
    assert store.find_token(OAuthToken(access_token="1000.unknown")) is None
    print(f"{len(probes) + 2} lookups, each with the plain values back")


def test_the_longest_value_fits_once_encrypted(stores):
    store = stores([KEY_1])
    longest = "1000." + "x" * (crypto.MAX_PLAINTEXT_BYTES - 5)
    store.save_token(sdk_token(2, refresh_token=longest, access_token=longest[::-1]))
    found = store.find_token(OAuthToken(user_signature=UserSignature(user_of(2))))
    stored = raw_rows(store)[found.get_id()]
    print(f"{len(longest)} bytes stored as {len(stored['refresh_token'])} of "
          "2048 characters")
    assert found.get_refresh_token() == longest
    assert len(stored["refresh_token"]) <= 2048

    # One byte more (a two-byte character) is refused, naming the field.
    too_long = longest[:-1] + "é"
    before = raw_rows(store)
    with pytest.raises(ValueError) as refused:
        store.save_token(sdk_token(2, refresh_token=too_long))
    assert "refresh_token" in str(refused.value)
    assert str(crypto.MAX_PLAINTEXT_BYTES) in str(refused.value)
    assert raw_rows(store) == before


# -- keys it lacks ---------------------------------------------------------


def lookups_of(token_id: str) -> dict:
    return {
        "find_token": lambda s: s.find_token(OAuthToken(id=token_id)),
        "find_token by user": lambda s: s.find_token(
            OAuthToken(user_signature=UserSignature(user_of(3)))
        ),
        "find_token_by_id": lambda s: s.find_token_by_id(token_id),
        "get_tokens": lambda s: s.get_tokens(),
    }


def refused_lookups(store, token_id: str) -> dict:
    messages = {}
    for name, call in lookups_of(token_id).items():
        with pytest.raises(SDKException) as refused:
            call(store)
        assert refused.value.code == "TOKEN_STORE", name
        messages[name] = str(refused.value)
    return messages


def test_a_row_under_a_key_the_store_lacks_names_the_row(stores):
    writer = stores([KEY_1])
    token = sdk_token(3)
    writer.save_token(token)
    messages = refused_lookups(stores([KEY_2, KEY_3]), token.get_id())
    print(*messages.values(), sep="\n")
    for message in messages.values():
        assert token.get_id() in message
        assert "2 encryption key(s)" in message
        assert crypto.ENV_VAR in message
        assert leaks([message], known_values(4) + list(KEYS)) == []


def test_a_store_without_keys_says_the_row_is_encrypted(stores):
    writer = stores([KEY_1])
    token = sdk_token(3)
    writer.save_token(token)
    messages = refused_lookups(stores([]), token.get_id())
    print(*messages.values(), sep="\n")
    for message in messages.values():
        assert token.get_id() in message
        assert "has no encryption keys" in message
        assert leaks([message], known_values(4)) == []


def test_a_store_without_keys_refuses_a_value_that_looks_encrypted(stores):
    store = stores([])
    with pytest.raises(ValueError) as refused:
        store.save_token(sdk_token(4, access_token="fernet:not-really"))
    assert "access_token" in str(refused.value)
    assert raw_rows(store) == {}


# -- turning it on, and rotating -------------------------------------------


def test_a_plain_row_is_read_and_encrypted_by_its_next_save(stores):
    plain = stores([])
    token = sdk_token(5)
    plain.save_token(token)
    assert raw_rows(plain)[token.get_id()]["refresh_token"] == token.get_refresh_token()

    store = stores([KEY_1])
    found = store.find_token(OAuthToken(user_signature=UserSignature(user_of(5))))
    assert secrets_of(found) == secrets_of(token)
    # The SDK saves the whole token it found, with a new access token.
    found.set_access_token("1000.ACCESS.AFTER.REFRESH")
    store.save_token(found)

    row = raw_rows(store)[token.get_id()]
    assert all(row[name].startswith(crypto.MARKER) for name in SECRET_FIELDS)
    assert_no_secret_in_table(store, known_values(6))
    again = stores([KEY_1]).find_token_by_id(token.get_id())
    assert again.get_access_token() == "1000.ACCESS.AFTER.REFRESH"
    assert again.get_refresh_token() == token.get_refresh_token()


def test_a_new_first_key_encrypts_and_the_old_one_still_reads(stores):
    old = stores([KEY_1])
    token = sdk_token(6)
    old.save_token(token)

    rotated = stores([KEY_2, KEY_1])
    found = rotated.find_token_by_id(token.get_id())
    assert secrets_of(found) == secrets_of(token)
    found.set_access_token("1000.ACCESS.UNDER.KEY2")
    rotated.save_token(found)
    # Every value the save carried is now under the new key alone.
    assert stores([KEY_2]).find_token_by_id(token.get_id()).get_access_token() == (
        "1000.ACCESS.UNDER.KEY2"
    )

    # A save that carries only a new access token leaves the rest under
    # the old key until rotate-key runs.
    other = sdk_token(7)
    old.save_token(other)
    answer = OAuthToken(id=other.get_id(), access_token="1000.ACCESS.ONLY")
    rotated.save_token(answer)
    with pytest.raises(SDKException):
        stores([KEY_2]).find_token_by_id(other.get_id())
    tally = rekey.rotate(rotated.engine, rotated.repository.cipher)
    print(f"rotate-key: {tally.describe('re-encrypted')}")
    assert (tally.rewritten, tally.already, tally.failed) == (1, 1, 0)
    after = stores([KEY_2]).find_token_by_id(other.get_id())
    assert after.get_access_token() == "1000.ACCESS.ONLY"
    assert after.get_client_secret() == SECRET


def test_encrypt_then_rotate_the_whole_table(stores):
    plain = stores([])
    tokens = [sdk_token(n) for n in range(10, 40)]
    for token in tokens:
        plain.save_token(token)
    before = raw_rows(plain)
    cipher = crypto.cipher_for([KEY_1])

    first = rekey.encrypt(plain.engine, cipher, batch_size=7)
    again = rekey.encrypt(plain.engine, cipher, batch_size=7)
    print(f"encrypt: {first.describe('encrypted')}")
    print(f"encrypt again: {again.describe('encrypted')}")
    assert (first.rewritten, first.already, first.failed) == (30, 0, 0)
    assert (again.rewritten, again.already, again.failed) == (0, 30, 0)
    assert_no_secret_in_table(plain, [v for n in range(10, 40)
                                      for v in values_for(n).values()])
    after = raw_rows(plain)
    for row_id, row in before.items():
        # Digests, expiry and updated_at are as they were.
        for column in ("refresh_token_digest", "access_token_digest",
                       "grant_token_digest", "expiry_time", "updated_at"):
            assert after[row_id][column] == row[column], column

    rotation = crypto.cipher_for([KEY_2, KEY_1])
    turned = rekey.rotate(plain.engine, rotation, batch_size=4)
    print(f"rotate-key: {turned.describe('re-encrypted')}")
    assert (turned.rewritten, turned.failed) == (30, 0)
    only_new = stores([KEY_2])
    found = {t.get_id(): secrets_of(t) for t in only_new.get_tokens()}
    assert found == {t.get_id(): secrets_of(t) for t in tokens}
    with pytest.raises(SDKException):
        stores([KEY_1]).find_token_by_id(tokens[0].get_id())


def test_rotating_without_the_old_key_fails_those_rows_and_changes_nothing(stores):
    writer = stores([KEY_1])
    writer.save_token(sdk_token(8))
    before = raw_rows(writer)
    tally = rekey.rotate(writer.engine, crypto.cipher_for([KEY_2]))
    print(f"rotate-key without the old key: {tally.describe('re-encrypted')}; "
          f"{tally.failures}")
    assert (tally.rewritten, tally.failed) == (0, 1)
    assert next(iter(before)) in tally.failures[0]
    assert raw_rows(writer) == before


def test_a_save_made_during_the_walk_is_kept(backend, stores, monkeypatch):
    # Between the walk's read of a row and its rewrite, the application
    # saves that row: the compare-and-set misses, the row is read again,
    # and the application's values are what end up encrypted.
    plain = stores([])
    tokens = [sdk_token(n) for n in range(50, 56)]
    for token in tokens:
        plain.save_token(token)
    app = stores([KEY_1])
    target = tokens[2].get_id()
    real = rekey._compare_and_set
    interfered = []

    def app_saves_first(conn, row, changes):
        if row.id == target and not interfered:
            interfered.append(row.id)
            if backend.startswith("sqlite"):
                # SQLite's walk holds the write lock for its batch, so no
                # other connection can write here: the change comes
                # through the walk's own connection instead.
                conn.exec_driver_sql(
                    "UPDATE oauthtoken SET access_token = ? WHERE id = ?",
                    ("1000.ACCESS.BY.APP", target),
                )
            else:
                app.save_token(OAuthToken(id=target, access_token="1000.ACCESS.BY.APP"))
        return real(conn, row, changes)

    monkeypatch.setattr(rekey, "_compare_and_set", app_saves_first)
    tally = rekey.encrypt(app.engine, app.repository.cipher, batch_size=3)
    print(f"encrypt with a save in between: {tally.describe('encrypted')}")
    assert interfered == [target] and tally.raced == 1
    assert (tally.rewritten, tally.already, tally.failed) == (6, 0, 0)
    found = app.find_token_by_id(target)
    assert found.get_access_token() == "1000.ACCESS.BY.APP"
    assert found.get_refresh_token() == tokens[2].get_refresh_token()
    assert_no_secret_in_table(app, ["1000.ACCESS.BY.APP"] + [
        v for n in range(50, 56) for v in values_for(n).values()
    ])


# -- keys and their errors --------------------------------------------------

BAD_KEYS = {
    "not base64": "not-a-key",
    "cut short": KEY_1[:-4],
    "31 bytes": KEY_1[:-2] + "==",
    "44 characters, no padding": "x" * 44,
    "junk after the padding": KEY_1 + "A",
    "two keys without a comma": KEY_1 + KEY_2,
}


@pytest.mark.parametrize("bad", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_a_bad_key_is_a_configuration_error_that_does_not_show_it(bad, tmp_path):
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    with pytest.raises(ConfigurationError) as refused:
        SqlAlchemyStore(url, encryption_keys=[KEY_2, bad])
    message = str(refused.value)
    print(message)
    assert "key 2 of 2" in message and "sqlstore keygen" in message
    assert bad not in message and KEY_2 not in message
    assert refused.value.__cause__ is None and refused.value.__context__ is None


def test_keys_come_from_the_environment_unless_given(stores, monkeypatch):
    monkeypatch.setenv(crypto.ENV_VAR, f" {KEY_2} , {KEY_1},")
    assert crypto.cipher_for(None).key_count == 2
    assert crypto.cipher_for([]).encrypts is False
    monkeypatch.setenv(crypto.ENV_VAR, "")
    assert crypto.cipher_for(None).encrypts is False
    monkeypatch.setenv(crypto.ENV_VAR, "short")
    with pytest.raises(ConfigurationError) as refused:
        crypto.cipher_for(None)
    assert crypto.ENV_VAR in str(refused.value) and "short" not in str(refused.value)


def test_a_generated_key_works(tmp_path):
    key = crypto.generate_key()
    cipher = crypto.cipher_for([key])
    assert cipher.encrypts and len(key) == 44
    stored = cipher.encrypt("access_token", "1000.x")
    assert cipher.decrypt(stored) == "1000.x" and stored.startswith("fernet:")


# -- nothing gets out ---------------------------------------------------------


def test_no_key_or_secret_in_logs_reprs_or_errors(stores, capfd):
    secrets = known_values(12) + list(KEYS)
    with everything_captured(capfd) as captured:
        store = stores([KEY_1, KEY_2])
        token = sdk_token(11)
        store.save_token(token)
        store.find_token(OAuthToken(user_signature=UserSignature(user_of(11))))
        store.get_tokens()
        for keys in ([KEY_3], []):
            other = stores(keys)
            with pytest.raises(SDKException) as refused:
                other.find_token_by_id(token.get_id())
            captured.exception(refused.value)
            captured.objects(other, other.repository, other.repository.cipher)
        with pytest.raises(ValueError) as too_long:
            store.save_token(sdk_token(11, access_token="1000." + "y" * 2000))
        captured.exception(too_long.value)
        with pytest.raises(ConfigurationError) as bad:
            crypto.cipher_for([KEY_1, KEY_2[:-3]])
        captured.exception(bad.value)
        cipher = store.repository.cipher
        captured.objects(store, store.repository, cipher)
        logging.getLogger("sqlstore").debug("done")
        rekey.rotate(store.engine, crypto.cipher_for([KEY_3]))  # fails the row
    assert_clean(captured, secrets)


# -- through the SDK -----------------------------------------------------------


@pytest.fixture
def zoho(monkeypatch, tmp_path):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.chdir(tmp_path)  # the SDK may write files into the cwd
    with ZohoStandIn() as server:
        yield server


def test_the_sdk_meets_a_row_it_cannot_open_as_an_error_not_a_new_grant(
    stores, zoho
):
    def app(store, **key):
        return run_sdk_process(
            database_url=None, zoho_url=zoho.url, client_id=zoho.client_id,
            client_secret=zoho.client_secret, store=store, **key,
        )

    first = app(stores([KEY_1]), grant_token=zoho.new_grant_token("ada@example.com"))
    exchanges = dict(zoho.counts)
    with pytest.raises(SDKException) as refused:
        app(stores([KEY_2]), user_name=first.user_name)
    after_refusal = dict(zoho.counts)
    again = app(stores([KEY_2, KEY_1]), user_name=first.user_name)
    print(f"first run: {first}; refused: {refused.value}; "
          f"exchanges before {exchanges}, after the refusal {after_refusal}")
    assert refused.value.code == "TOKEN_STORE"
    assert first.token_id in str(refused.value)
    # Not taken for "not found": no grant was exchanged, nothing refreshed.
    assert after_refusal.get("grant") == exchanges.get("grant") == 1
    assert after_refusal.get("refresh", 0) == exchanges.get("refresh", 0)
    assert (again.token_id, again.records) == (first.token_id, first.records)
    assert_no_secret_in_table(stores([]), [zoho.client_secret])
