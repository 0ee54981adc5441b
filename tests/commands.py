"""Running the ``sqlstore`` command in the test's process, as Click's runner does."""

from __future__ import annotations

from click.testing import CliRunner, Result

from sqlstore.cli import cli


def runner() -> CliRunner:
    """A runner that keeps stderr apart, on every Click this project takes."""
    try:
        return CliRunner(mix_stderr=False)  # Click 8.1, the last for Python 3.9
    except TypeError:
        return CliRunner()  # Click 8.2 on: always apart, and no such argument


def sqlstore(*args) -> Result:
    """The command's result; SQLSTORE_DATABASE_URL is not set for it."""
    result = runner().invoke(
        cli, [str(a) for a in args], env={"SQLSTORE_DATABASE_URL": None}
    )
    print(f"$ sqlstore {' '.join(str(a) for a in args)} -> {result.exit_code}")
    print(result.stdout)
    print(result.stderr)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def ok(*args) -> Result:
    """The result of a command that must succeed."""
    result = sqlstore(*args)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result
