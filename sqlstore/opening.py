"""How a store of either SDK family gets its repository.

Both adapters take the same arguments: a URL (else ``SQLSTORE_DATABASE_URL``,
else the SQLite file ``zohooauth.db``) or an engine of the application's
own, whether to create the schema, and connection options.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy.engine import Engine

from . import config, crypto
from .core import TokenRepository


def open_repository(
    url: Optional[str],
    engine: Optional[Engine],
    create_schema: Optional[bool],
    options: config.EngineOptions,
    encryption_keys: crypto.Keys = None,
) -> TokenRepository:
    """The repository a store works through, its schema made if asked.

    create_schema: None runs the migrations only for the SQLite fallback
        file and in-memory SQLite; a server database gets its schema at
        deploy time, from `sqlstore upgrade`.
    encryption_keys: see ``sqlstore.crypto.cipher_for``.
    """
    if url is not None and engine is not None:
        raise ValueError("pass either url or engine, not both")
    if not isinstance(options, config.EngineOptions):
        raise TypeError(
            "options must be a sqlstore.EngineOptions, "
            f"not {type(options).__name__}"
        )
    # Keys first: a bad one fails before any connection is made.
    cipher = crypto.cipher_for(encryption_keys)
    if engine is not None:
        config.check_engine(engine)
    uses_default_file = engine is None and not config.url_is_configured(url)
    autocommit_engine = None
    if engine is None:
        engine, autocommit_engine = config.create_store_engines(
            config.database_url(url), options
        )
    repository = TokenRepository(engine, autocommit_engine, options, cipher=cipher)
    if create_schema is None:
        create_schema = uses_default_file or config.is_memory_sqlite(engine.url)
    if create_schema:
        from . import migrate

        migrate.upgrade(engine)
    return repository
