"""The ``sqlstore`` command: the schema, and a demo of the store at work.

Every command that reaches a database takes ``--url``, falling back to
``SQLSTORE_DATABASE_URL`` and then to the SQLite file ``zohooauth.db``.
Errors print as one line on stderr and exit with status 1.
"""

from __future__ import annotations

import logging
import sys

import click

from . import config, keycommands, migrate
from .errors import SqlStoreError

url_option = click.option(
    "--url",
    envvar=config.ENV_VAR,
    show_envvar=True,
    help="SQLAlchemy database URL (default: sqlite:///zohooauth.db).",
)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
@click.version_option(package_name="sqlstore")
def cli(verbose: bool) -> None:
    """Keep Zoho CRM SDK tokens in an SQL database."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@url_option
@click.option("--revision", default="head", show_default=True)
def upgrade(url, revision) -> None:
    """Create or upgrade the token table (run at deploy time)."""
    target = config.database_url(url)
    change = migrate.upgrade_change(target, revision)
    where = config.mask_url(target)
    after = change.after or "base (no table)"
    if change.before == change.after:
        click.echo(f"{where}: already at {after}")
    else:
        click.echo(f"{where}: upgraded from {change.before or 'empty'} to {after}")


@cli.command()
@url_option
@click.argument("revision")
def downgrade(url, revision) -> None:
    """Step the schema back to REVISION ("base" drops the table)."""
    target = config.database_url(url)
    after = migrate.downgrade(target, revision)
    click.echo(f"{config.mask_url(target)}: now at {after or 'base (no table)'}")


@cli.command()
@url_option
def current(url) -> None:
    """Print the database's schema revision and whether it is the newest."""
    state = migrate.schema_state(config.database_url(url))
    click.echo(f"{state.current or 'none'} ({state.describe()})")


@cli.command()
@click.option(
    "--url",
    default=config.DEFAULT_URL,
    show_default=True,
    help="Database for the demo; SQLSTORE_DATABASE_URL is not read here.",
)
@click.option("--keep", is_flag=True, help="Keep the demo's row afterwards.")
def demo(url, keep) -> None:
    """Run the SDK's token lifecycle against a local stand-in for Zoho."""
    from .demo import run_demo

    run_demo(url, click.echo, keep=keep)


keycommands.add_to(cli, url_option)


def main(argv=None) -> int:
    try:
        cli.main(args=argv, prog_name="sqlstore", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except SqlStoreError as err:
        click.echo(f"error: {err}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
