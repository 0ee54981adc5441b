"""Alembic's environment for the sqlstore token table.

Alembic runs this file for every command. The database it works on is, in
order of precedence:

1. a connection handed in through ``config.attributes["connection"]``; this
   is how ``sqlstore.migrate`` runs, and the only way to reach an in-memory
   ``sqlite://`` database, which exists only inside the store's own
   connection;
2. the ``-x url=...`` argument of the ``alembic`` command;
3. the ``SQLSTORE_DATABASE_URL`` environment variable;
4. the default SQLite file of ``sqlstore.config``.

A connection handed in is used as it is: its owner has taken the schema lock
and commits. An engine made here from a URL takes the lock itself.
"""

from __future__ import annotations

import logging
import re
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection, make_url

from sqlstore import types as store_types
from sqlstore.config import create_store_engine, database_url, mask_url
from sqlstore.migrate import VERSION_TABLE, schema_lock
from sqlstore.model import Base

# Alembic loads this file under a module name of its own making, so a
# logger named after __name__ would sit outside the sqlstore hierarchy.
log = logging.getLogger("sqlstore.migrations.env")

config = context.config
target_metadata = Base.metadata


def _configure_logging() -> None:
    # Only the alembic command line has an ini file; code calling the API
    # keeps its own logging untouched.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configured_url() -> str:
    x_url = context.get_x_argument(as_dictionary=True).get("url")
    return database_url(x_url)


def _include_name(name, type_, parent_names) -> bool:
    # The token table may share a database with an application's tables;
    # autogenerate must neither offer to drop them nor report them.
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _render_item(type_, obj, autogen_context):
    # Without this, autogenerate would write our column types as a bare
    # module path that the revision file does not import.
    if type_ == "type" and type(obj).__module__ == store_types.__name__:
        autogen_context.imports.add(f"import {store_types.__name__}")
        return f"{store_types.__name__}.{obj!r}"
    return False


# An empty string literal as a database reports it back: '' on MySQL,
# ('') on SQLite, ''::character varying on PostgreSQL.
_EMPTY_STRING_LITERAL = re.compile(r"^\(*''(::[\w ]+)?\)*$")


def _compare_server_default(
    migration_context, inspected_column, metadata_column, inspected, metadata, _
):
    # The model's server_default="" reaches Alembic as an empty string,
    # which its SQLite and MySQL rules take for a change from the ''
    # they reflect. Settle that case; leave every other one to Alembic.
    model_says_empty = getattr(metadata, "arg", None) == ""
    if model_says_empty and _EMPTY_STRING_LITERAL.match(inspected or ""):
        return False
    return None


def _options(dialect_name: str) -> dict:
    return dict(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        compare_server_default=_compare_server_default,
        include_name=_include_name,
        render_item=_render_item,
        # SQLite cannot alter most of a table in place; batch mode has
        # Alembic copy the table instead.
        render_as_batch=dialect_name == "sqlite",
    )


def run_migrations_offline() -> None:
    """Write the migration SQL to standard output instead of running it."""
    url = _configured_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the handed-in connection or on our own engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = _configured_url()
    log.info("running migrations on %s", mask_url(url))
    engine = create_store_engine(url)
    try:
        # One transaction for the lock and every revision: on PostgreSQL and
        # SQLite a failed upgrade then leaves nothing half done.
        with engine.begin() as connection, schema_lock(connection):
            _run_on(connection)
    finally:
        engine.dispose()


_configure_logging()
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
