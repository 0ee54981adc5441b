"""The ``sqlstore`` command, through its real entry point in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

# A whole Zoho-shaped token: what the demo must never print.
FULL_TOKEN = re.compile(r"1000\.[0-9a-f]{16,}")


def sqlstore(*args, cwd, env_url=None):
    environment = dict(os.environ)
    environment.pop("SQLSTORE_DATABASE_URL", None)
    if env_url:
        environment["SQLSTORE_DATABASE_URL"] = env_url
    return subprocess.run(
        [sys.executable, "-m", "sqlstore.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_upgrade_current_downgrade_on_a_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    first = sqlstore("upgrade", "--url", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty to" in first.stdout
    again = sqlstore("upgrade", cwd=tmp_path, env_url=url)
    assert "already at" in again.stdout
    assert "at head" in sqlstore("current", "--url", url, cwd=tmp_path).stdout
    down = sqlstore("downgrade", "--url", url, "base", cwd=tmp_path)
    assert down.returncode == 0 and "base" in down.stdout
    assert sqlstore("current", "--url", url, cwd=tmp_path).stdout.startswith("none")


def test_upgrade_without_a_url_uses_the_default_file(tmp_path):
    result = sqlstore("upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "zohooauth.db").exists()


def test_errors_are_one_line_and_exit_1(tmp_path):
    result = sqlstore("upgrade", "--url", "not a url", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    print(lines)
    assert result.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("error: not a database URL")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://app:pw-123@127.0.0.1:1/db",
        "postgresql+psycopg2://app@127.0.0.1:1/db?password=pw-123",
        "mysql+pymysql://app@127.0.0.1:1/db?password=pw-123",
    ],
)
def test_passwords_in_urls_are_masked_in_errors(tmp_path, url):
    result = sqlstore("upgrade", "--url", url, cwd=tmp_path)
    print(result.stderr)
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr and "***" in result.stderr
    assert "pw-123" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url, advice",
    [
        (
            "postgresql+pg8000://u@127.0.0.1/db",
            'postgresql+psycopg2:// URL and pip install "sqlstore[postgres]"',
        ),
        (
            "mysql+mysqldb://u@127.0.0.1/db",
            'mysql+pymysql:// URL and pip install "sqlstore[mysql]"',
        ),
    ],
)
def test_a_missing_driver_says_how_to_fix_it(tmp_path, url, advice):
    result = sqlstore("upgrade", "--url", url, cwd=tmp_path)
    print(result.stderr)
    assert result.returncode == 1
    assert advice in result.stderr


def test_heroku_style_postgres_urls_are_read(tmp_path):
    result = sqlstore("current", "--url", "postgres://u@127.0.0.1:1/db", cwd=tmp_path)
    assert result.returncode == 1
    assert "postgresql+psycopg2://u@127.0.0.1:1/db" in result.stderr


@pytest.mark.e2e
def test_the_demo_shows_the_lifecycle_with_secrets_masked(tmp_path):
    result = sqlstore("demo", cwd=tmp_path, env_url="sqlite:///ignored.db")
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    assert "In all: 1 grant exchange, 1 refresh, 4 processes, one row." in result.stdout
    assert "refresh token unchanged; access token renewed." in result.stdout
    assert (tmp_path / "zohooauth.db").exists()
    assert not (tmp_path / "ignored.db").exists()
    assert not FULL_TOKEN.search(result.stdout + result.stderr)


def _saved_tokens(url: str, count: int) -> None:
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

    from sqlstore import SqlAlchemyStore

    store = SqlAlchemyStore(url)
    for number in range(count):
        token = OAuthToken(
            client_id="1000.CLIENT",
            refresh_token=f"1000.refresh.{number:040d}",
            access_token=f"1000.access.{number:040d}",
            user_signature=UserSignature(f"user{number}@example.com"),
        )
        store.save_token(token)
    store.close()


def test_downgrade_to_base_keeps_tokens_unless_told(tmp_path):
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    assert sqlstore("upgrade", "--url", url, cwd=tmp_path).returncode == 0
    _saved_tokens(url, 3)
    refused = sqlstore("downgrade", "--url", url, "base", cwd=tmp_path)
    print(refused.stderr)
    assert refused.returncode == 1
    assert "its 3 tokens; pass --yes" in refused.stderr
    assert "at head" in sqlstore("current", "--url", url, cwd=tmp_path).stdout
    done = sqlstore("downgrade", "--url", url, "base", "--yes", cwd=tmp_path)
    assert done.returncode == 0 and "base" in done.stdout


@pytest.mark.parametrize("command", [["status"], ["current"], ["list"]])
def test_a_missing_sqlite_file_is_named_not_created(tmp_path, command):
    missing = tmp_path / "typo.db"
    result = sqlstore(*command, "--url", f"sqlite:///{missing}", cwd=tmp_path)
    assert result.returncode == 1
    assert f"there is no SQLite file {missing}" in result.stderr
    assert not missing.exists()


def test_an_empty_url_is_refused_not_read_as_the_default(tmp_path):
    result = sqlstore("status", cwd=tmp_path, env_url=" ")
    assert result.returncode == 1
    assert "URL is empty" in result.stderr
    assert not (tmp_path / "zohooauth.db").exists()
