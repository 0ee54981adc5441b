"""sqlstore: OAuth tokens of Zoho's CRM Python SDK in any SQL database.

``SqlAlchemyStore`` is imported on first use, so that the command line and
the migrations work in an environment without a Zoho SDK installed.
"""

from .config import EngineOptions
from .errors import (
    ConfigurationError,
    DecryptionError,
    MissingDriverError,
    SchemaError,
    SqlStoreError,
    StoreDatabaseError,
)
from .record import TokenRecord

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DecryptionError",
    "EngineOptions",
    "MissingDriverError",
    "SchemaError",
    "SqlAlchemyStore",
    "SqlStoreError",
    "StoreDatabaseError",
    "TokenRecord",
    "TokenStoreError",
]


def __getattr__(name):
    if name in ("SqlAlchemyStore", "TokenStoreError"):
        from . import zoho

        return getattr(zoho, name)
    raise AttributeError(f"module 'sqlstore' has no attribute {name!r}")
