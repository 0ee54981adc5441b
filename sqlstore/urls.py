"""Database URLs: read them, say what is wrong with them, print them safely."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigurationError, MissingDriverError

# The drivers sqlstore installs through an extra, and the extra's name.
DRIVER_EXTRAS = {
    ("postgresql", "psycopg2"): "postgres",
    ("mysql", "pymysql"): "mysql",
    ("mariadb", "pymysql"): "mysql",
}
# For each backend, the URL scheme whose driver an extra installs.
SUPPORTED_SCHEMES = {
    "postgresql": ("postgresql+psycopg2", "postgres"),
    "mysql": ("mysql+pymysql", "mysql"),
    "mariadb": ("mariadb+pymysql", "mysql"),
}
# Query-string parameters that carry credentials (e.g. ?password=...).
_SECRET_QUERY_WORDS = ("password", "passwd", "secret", "token", "key")
_EXAMPLES = (
    "postgresql+psycopg2://user@host/db, mysql+pymysql://user@host/db "
    "or sqlite:///file.db"
)


def parse_url(url: "str | URL") -> URL:
    """The URL parsed, or a ConfigurationError saying what is wrong."""
    if isinstance(url, str) and url.startswith("postgres://"):
        # The scheme Heroku and other hosts hand out, which SQLAlchemy no
        # longer reads: it means PostgreSQL through the driver we install.
        url = "postgresql+psycopg2://" + url[len("postgres://"):]
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        raise ConfigurationError(
            f"not a database URL: expected something like {_EXAMPLES}"
        ) from err
    if parsed.host and "@" in parsed.host:
        raise ConfigurationError(
            "the database URL has an '@' after the password: write an '@' "
            "inside a password as %40"
        )
    return parsed


def mask_url(url: "str | URL") -> str:
    """The URL with its password and secret parameters shown as ``***``."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"
    if parsed.host and "@" in parsed.host:
        # An unescaped '@' in a password: part of it was read as the host.
        parsed = parsed.set(host=parsed.host.rpartition("@")[2], password="***")
    hidden = {
        name: "***"
        for name in parsed.query
        if any(word in name.lower() for word in _SECRET_QUERY_WORDS)
    }
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    shown = parsed.render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")


def missing_driver(url: URL, module: "str | None" = None) -> MissingDriverError:
    """The error for a URL whose driver is not installed, with the fix.

    module: the Python module that failed to import, when known.
    """
    backend, driver = url.get_backend_name(), _driver_named(url)
    extra = DRIVER_EXTRAS.get((backend, driver))
    if extra:
        hint = f'pip install "sqlstore[{extra}]"'
    elif backend in SUPPORTED_SCHEMES:
        scheme, extra = SUPPORTED_SCHEMES[backend]
        hint = (
            f'install that driver, or use a {scheme}:// URL and pip install '
            f'"sqlstore[{extra}]"'
        )
    else:
        hint = "install its driver package"
    shown = driver or f"default {backend}"
    if module:
        shown = f"{shown} (module {module!r})"
    return MissingDriverError(
        f"the {shown} database driver is not installed: {hint}"
    )


def _driver_named(url: URL) -> str:
    # URL.get_driver_name() loads the dialect, which is what just failed.
    return url.drivername.partition("+")[2]


def unknown_driver(url: URL) -> ConfigurationError:
    return ConfigurationError(
        f"SQLAlchemy knows no database {url.drivername!r}: expected a URL "
        f"such as {_EXAMPLES}"
    )
