"""The operator commands on a table whose tokens are encrypted.

They take their keys from ``SQLSTORE_ENCRYPTION_KEYS``, as `sqlstore
encrypt` does: with the keys, an import stores ciphertext, and list, show
and export see the plain values; without them, the commands that need a
token's value say the row is encrypted, and the others still work.
"""

from __future__ import annotations

import json

import pytest
from commands import ok, sqlstore
from sandboxes import EXPECTED, PERSISTENT, SAVES, fill_file_store, own_database
from sqlalchemy import text

from sqlstore import crypto, migrate
from sqlstore.core import TokenRepository
from sqlstore.record import mask_secret
from sqlstore.sdkformats import read_csv


@pytest.fixture(params=PERSISTENT)
def db(request, tmp_path):
    with own_database(request.param, tmp_path) as database:
        migrate.upgrade(database.engine)
        yield database


@pytest.fixture
def key(monkeypatch):
    made = crypto.generate_key()
    monkeypatch.setenv(crypto.ENV_VAR, made)
    return made


def source_csv(tmp_path) -> str:
    path = tmp_path / "tokens.csv"
    fill_file_store(path, SAVES)
    return str(path)


def stored_text(database) -> str:
    """Every value of every row of the table, as one string."""
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM oauthtoken")).fetchall()
    return "\n".join(str(value) for row in rows for value in row)


def test_import_encrypts_and_export_gives_the_plain_values_back(db, tmp_path, key):
    ok("import", "--url", db.url, "--csv", source_csv(tmp_path))

    table = stored_text(db)
    plain = [value for value in EXPECTED.values() if value in table]
    print(f"plain access tokens found in the table: {len(plain)} of {len(EXPECTED)}")
    assert plain == []
    assert table.count(crypto.MARKER) >= len(EXPECTED)

    listed = json.loads(ok("list", "--url", db.url, "--json").stdout)
    assert len(listed) == len(EXPECTED)
    # Masked from the plain values, not from the ciphertext.
    shown = sorted(row["access_token"] for row in listed)
    assert shown == sorted(mask_secret(value) for value in EXPECTED.values())

    out = tmp_path / "exported.csv"
    ok("export", "--url", db.url, out)
    _header, lines = read_csv(str(out))
    exported = sorted(line.values["access_token"] for line in lines)
    assert exported == sorted(EXPECTED.values())

    cipher = crypto.cipher_for([key])
    found = TokenRepository(db.engine, cipher=cipher).all()
    assert sorted(r.access_token for r in found) == sorted(EXPECTED.values())


def test_without_the_keys_the_commands_say_the_rows_are_encrypted(
    db, tmp_path, key, monkeypatch
):
    ok("import", "--url", db.url, "--csv", source_csv(tmp_path))
    monkeypatch.delenv(crypto.ENV_VAR)

    assert "tokens: 3" in ok("status", "--url", db.url).stdout
    for command in (["list"], ["export", str(tmp_path / "out.csv")]):
        result = sqlstore(*command, "--url", db.url)
        assert result.exit_code == 1, command
        assert "encrypted" in result.stderr and crypto.ENV_VAR in result.stderr
        assert key not in result.stderr
    assert not (tmp_path / "out.csv").exists()

    # A second import without keys must not lay plain text beside the
    # ciphertext, nor take the encrypted rows for different tokens.
    again = sqlstore("import", "--url", db.url, "--csv", source_csv(tmp_path))
    assert again.exit_code == 1
    assert "encrypted" in again.stderr


def test_a_wrong_key_is_refused_by_the_commands(db, tmp_path, key, monkeypatch):
    ok("import", "--url", db.url, "--csv", source_csv(tmp_path))
    other = crypto.generate_key()
    monkeypatch.setenv(crypto.ENV_VAR, other)

    result = sqlstore("list", "--url", db.url)
    assert result.exit_code == 1
    assert "key" in result.stderr
    assert key not in result.stderr and other not in result.stderr
