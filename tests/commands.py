"""Running the ``sqlstore`` command in the test's process, as Click's runner does."""

from __future__ import annotations

from click.testing import CliRunner, Result

from sqlstore.cli import cli


def sqlstore(*args) -> Result:
    """The command's result; SQLSTORE_DATABASE_URL is not set for it."""
    result = CliRunner().invoke(
        cli, [str(a) for a in args], env={"SQLSTORE_DATABASE_URL": None}
    )
    print(f"$ sqlstore {' '.join(str(a) for a in args)} -> {result.exit_code}")
    print(result.output)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def ok(*args) -> Result:
    """The result of a command that must succeed."""
    result = sqlstore(*args)
    assert result.exit_code == 0, result.output
    return result
