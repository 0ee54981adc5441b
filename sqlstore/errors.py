"""The package's errors: one base class, a subclass for each cause.

Messages name what went wrong and what to do; they never hold a token, a
client secret or a password. The database's own error is kept as the
``__cause__`` of the error raised from it.
"""


class SqlStoreError(Exception):
    """Base class of every error sqlstore raises on purpose."""


class ConfigurationError(SqlStoreError):
    """The connection URL or an option cannot be used as given."""


class MissingDriverError(ConfigurationError):
    """The database driver the URL names is not installed."""


class SchemaError(SqlStoreError):
    """The database holds no token table, or one of another revision."""


class StoreDatabaseError(SqlStoreError):
    """The database failed or refused a statement."""


class DecryptionError(SqlStoreError):
    """A row's encrypted values open with none of the store's keys.

    Raised too when a store without keys meets an encrypted row. The
    message names the row's id, never a value.
    """
