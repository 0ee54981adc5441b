"""The ``sqlstore`` command: the schema, the tokens stored, moving them in
from the SDK's own stores and out again, and a demo of the store at work.

Every command that reaches a database takes ``--url``, falling back to
``SQLSTORE_DATABASE_URL`` and then to the SQLite file ``zohooauth.db``.
Errors print as one line on stderr and exit with status 1. The work is
done in the modules named by each command; this one only reads options
and prints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from typing import Iterator, List, Optional

import click
from sqlalchemy.engine import Engine

from . import config, keycommands, migrate
from .errors import ConfigurationError, SqlStoreError

url_option = click.option(
    "--url",
    envvar=config.ENV_VAR,
    show_envvar=True,
    help="SQLAlchemy database URL (default: sqlite:///zohooauth.db).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON, for scripts."
)
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Say what would be done; change nothing."
)


class OneLineError(click.ClickException):
    """An error as the command prints it: ``error: ...``, status 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Commands(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SqlStoreError as err:
            raise OneLineError(str(err)) from err


@click.group(cls=_Commands)
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
@click.version_option(package_name="sqlstore")
def cli(verbose: bool) -> None:
    """Keep Zoho CRM SDK tokens in an SQL database."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@contextlib.contextmanager
def _engine(url: Optional[str], *, ready: bool = True) -> Iterator[Engine]:
    """An engine on the database; with ``ready``, its table must be at head."""
    target = config.database_url(url)
    if config.is_memory_sqlite(config.parse_url(target)):
        raise ConfigurationError(
            "an in-memory database (sqlite://) lives inside one process and "
            "is gone when the command ends: give a file or server URL"
        )
    _require_existing_file(target)
    engine = config.create_store_engine(target)
    try:
        if ready:
            from .inventory import require_table

            require_table(engine)
        yield engine
    finally:
        engine.dispose()


def _require_existing_file(target: str) -> None:
    # SQLite creates a missing file on connecting: a mistyped path would
    # leave an empty database behind and report "no token table".
    url = config.parse_url(target)
    if url.get_backend_name() != "sqlite" or config.is_memory_sqlite(url):
        return
    if url.database and not os.path.exists(url.database):
        raise ConfigurationError(
            f"there is no SQLite file {url.database}: check the URL, or "
            "create it with `sqlstore upgrade`"
        )


def _echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _tokens(count: int) -> str:
    return "1 token" if count == 1 else f"{count} tokens"


def _echo_lines(lines: List[str]) -> None:
    for line in lines:
        click.echo(line)


@contextlib.contextmanager
def _progress_bar(total: int, label: str):
    """A bar on stderr when it is a terminal; otherwise nothing at all."""
    if total == 0 or not sys.stderr.isatty():
        yield lambda _done: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


# -- the schema ---------------------------------------------------------------


@cli.command()
@url_option
@click.option("--revision", default="head", show_default=True)
def upgrade(url, revision) -> None:
    """Create or upgrade the token table (run at deploy time)."""
    target = config.database_url(url)
    change = migrate.upgrade_change(target, revision)
    where = config.mask_url(target)
    if change.adoption is not None:
        _echo_lines(change.adoption.lines())
    after = change.after or "base (no table)"
    if change.before == change.after:
        click.echo(f"{where}: already at {after}")
    else:
        click.echo(f"{where}: upgraded from {change.before or 'empty'} to {after}")


@cli.command()
@url_option
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Drop the table even if it holds tokens.")
def downgrade(url, revision, yes) -> None:
    """Step the schema back to REVISION ("base" drops the table)."""
    target = config.database_url(url)
    _require_existing_file(target)
    if not yes:
        _refuse_to_drop_tokens(target, revision)
    after = migrate.downgrade(target, revision)
    click.echo(f"{config.mask_url(target)}: now at {after or 'base (no table)'}")


def _refuse_to_drop_tokens(target: str, revision: str) -> None:
    state = migrate.schema_state(target)
    if not migrate.downgrade_drops_table(state.current, revision):
        return
    from .core import tool_repository

    with _engine(target, ready=False) as engine:
        held = tool_repository(engine).count()
    if held:
        raise OneLineError(
            f"downgrading to {revision} drops the token table of "
            f"{config.mask_url(target)} and its {_tokens(held)}; "
            "pass --yes to do it"
        )


@cli.command()
@url_option
def current(url) -> None:
    """Print the database's schema revision and whether it is the newest."""
    target = config.database_url(url)
    _require_existing_file(target)
    state = migrate.schema_state(target)
    click.echo(f"{state.current or 'none'} ({state.describe()})")


@cli.command()
@url_option
@dry_run_option
@json_option
def adopt(url, dry_run, as_json) -> None:
    """Take over the SDK DBStore's oauthtoken table, keeping it as a backup.

    `sqlstore upgrade` does this by itself when every row can be copied;
    this command also copies what it can when some rows cannot.
    """
    from . import adopt as adoption

    with _engine(url, ready=False) as engine:
        report = adoption.adopt(
            engine,
            dry_run=dry_run,
            progress=_progress_bar_factory("copying"),
        )
    if as_json:
        _echo_json(report.as_dict())
    else:
        _echo_lines(report.lines())


# -- looking at the tokens ----------------------------------------------------


@cli.command()
@url_option
@json_option
def status(url, as_json) -> None:
    """Backend, schema revision and counts of what is stored."""
    from .inventory import status as read_status

    with _engine(url, ready=False) as engine:
        found = read_status(engine)
    if as_json:
        _echo_json(found.as_dict())
    else:
        _echo_lines(found.lines())


@cli.command("list")
@url_option
@click.option("--user", help="Only this user's tokens.")
@json_option
def list_tokens(url, user, as_json) -> None:
    """One line a token, secrets masked."""
    from .inventory import tokens, view

    with _engine(url) as engine:
        shown = [view(record) for record in tokens(engine, user)]
    if as_json:
        _echo_json(shown)
        return
    columns = ("id", "user_name", "client_id", "api_domain", "expires_at")
    columns += ("access_token", "refresh_token")
    rows = [[_cell(item, name) for name in columns] for item in shown]
    _echo_lines(_aligned([list(columns)] + rows))
    click.echo(_tokens(len(shown)))


def _cell(item: dict, name: str) -> str:
    value = item[name]
    if name == "expires_at" and item["expired"]:
        return f"{value} (expired)"
    return "-" if value in (None, "") else str(value)


def _aligned(rows: List[List[str]]) -> List[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]


@cli.command()
@url_option
@click.argument("token_id", metavar="ID")
@json_option
def show(url, token_id, as_json) -> None:
    """Every field of one token, secrets masked."""
    from .core import tool_repository
    from .inventory import view

    with _engine(url) as engine:
        found = tool_repository(engine).find_by_id(token_id)
    if found is None:
        raise OneLineError(f"no token with id {token_id!r}")
    shown = view(found)
    if as_json:
        _echo_json(shown)
    else:
        _echo_lines([f"{name}: {_cell(shown, name)}" for name in shown])


# -- removing tokens ----------------------------------------------------------


@cli.command()
@url_option
@click.argument("token_id", metavar="ID")
def delete(url, token_id) -> None:
    """Delete one token by its id."""
    from .core import tool_repository

    with _engine(url) as engine:
        deleted = tool_repository(engine).delete(token_id)
    if not deleted:
        raise OneLineError(f"no token with id {token_id!r}; nothing deleted")
    click.echo(f"deleted token {token_id}")


@cli.command()
@url_option
@click.option("--yes", is_flag=True, help="Really delete every token.")
def purge(url, yes) -> None:
    """Delete every token (only with --yes)."""
    from .core import tool_repository

    with _engine(url) as engine:
        repository = tool_repository(engine)
        if not yes:
            raise OneLineError(
                f"purge deletes all {_tokens(repository.count())} of "
                f"{config.mask_url(engine.url)}; pass --yes to do it"
            )
        deleted = repository.delete_all()
    click.echo(f"deleted {_tokens(deleted)}")


@cli.command()
@url_option
@click.option(
    "--unused-days",
    type=click.FloatRange(min=0),
    help="Also delete tokens not saved (refreshed) for this many days.",
)
@dry_run_option
@json_option
def prune(url, unused_days, dry_run, as_json) -> None:
    """Delete tokens that can no longer be used (see the README's policy)."""
    from .inventory import prune as prune_tokens

    with _engine(url) as engine:
        result = prune_tokens(engine, unused_days=unused_days, dry_run=dry_run)
    if as_json:
        _echo_json(result.as_dict())
        return
    for row in result.selected:
        click.echo(f"{row.id}  {row.user_name or '-'}  {row.reason}")
    if dry_run:
        click.echo(f"would delete {_tokens(len(result.selected))} (dry run)")
    else:
        click.echo(f"deleted {_tokens(result.deleted)}")


# -- moving tokens in and out -------------------------------------------------


@cli.command("import")
@url_option
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    help="A CSV file of the SDK's FileStore.",
)
@click.option(
    "--db",
    "source_url",
    help="URL of a database holding a table of the SDK's DBStore.",
)
@click.option(
    "--table",
    default="oauthtoken",
    show_default=True,
    help="That table's name.",
)
@dry_run_option
@click.option("--strict", is_flag=True, help="Import nothing if any row is bad.")
@json_option
def import_tokens(url, csv_path, source_url, table, dry_run, strict, as_json):
    """Import tokens from the SDK's CSV file or MySQL table."""
    from . import importing, sdkformats

    if (csv_path is None) == (source_url is None):
        raise click.UsageError("give one of --csv FILE or --db URL")
    with _engine(url) as engine:
        if csv_path is not None:
            header, rows = sdkformats.read_csv(csv_path)
            source = f"{csv_path} ({header})"
        else:
            rows = sdkformats.read_table_at(source_url, table)
            source = f"table {table} at {config.mask_url(source_url)}"
        report = importing.import_into(
            engine,
            rows,
            source,
            dry_run=dry_run,
            strict=strict,
            progress=_progress_bar_factory("importing"),
        )
    if as_json:
        _echo_json(report.as_dict())
    else:
        _echo_lines([report.summary(), *report.details()])


def _progress_bar_factory(label: str):
    return lambda total: _progress_bar(total, label)


@cli.command()
@url_option
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--sdk-ids",
    is_flag=True,
    help="Number the rows 1, 2, 3... as the SDK's FileStore needs.",
)
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
def export(url, path, sdk_ids, force) -> None:
    """Write every token to PATH in the SDK's CSV format (mode 0600)."""
    from .exporting import export_csv

    with _engine(url) as engine:
        count = export_csv(engine, path, sdk_ids=sdk_ids, overwrite=force)
    click.echo(f"exported {_tokens(count)} to {path}")
    click.echo(
        f"warning: {path} holds {_tokens(count)} and client secrets in plain "
        "text; only you can read it (mode 0600). Delete it once it has "
        "served.",
        err=True,
    )


# -- the demo -----------------------------------------------------------------


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
    except SqlStoreError as err:  # raised outside a command
        click.echo(f"error: {err}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
