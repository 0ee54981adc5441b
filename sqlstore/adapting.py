"""What the adapters of both SDK families share.

Each family has its own token class and its own SDKException; what an
adapter does with them is the same: refuse what is not a token, and raise
the repository's failures as that SDK's exception with code TOKEN_STORE.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from . import errors

T = TypeVar("T")

# The SDKs' error code for a failing token store.
TOKEN_STORE = "TOKEN_STORE"

# The token fields that are the record's fields of the same name, in both
# families; the current one adds api_domain.
PLAIN_FIELDS = (
    "id",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "redirect_url",
)

# What a repository call raises that the SDK must hear as TOKEN_STORE.
_STORE_FAILURES = (
    errors.StoreDatabaseError,
    errors.SchemaError,
    errors.DecryptionError,
)


def checked_token(token, token_class: type, package: str):
    """The token itself, or a TypeError naming the class expected."""
    if not isinstance(token, token_class):
        raise TypeError(
            f"expected a {package} OAuthToken, got "
            f"{type(token).__module__}.{type(token).__name__}"
        )
    return token


def guarded(error_class: type, operation: Callable[..., T], *args) -> T:
    """Run a repository call, raising its failures as ``error_class``."""
    try:
        return operation(*args)
    except _STORE_FAILURES as err:
        raise error_class(str(err), err.__cause__ or err) from err
