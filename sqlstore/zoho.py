"""``SqlAlchemyStore``: the TokenStore of Zoho's current Python SDKs.

The SDK (``zohocrmsdk5-0`` to ``zohocrmsdk8-0``, imported as ``zohocrmsdk``)
calls the store before every API request. This module only translates
between the SDK's ``OAuthToken`` objects and ``TokenRecord`` values; the
SQL lives in ``core``.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from sqlalchemy.engine import Engine

from . import config, crypto, errors, lease
from .adapting import PLAIN_FIELDS, TOKEN_STORE, checked_token, guarded
from .expiry import parse_expires_in
from .opening import open_repository
from .record import TokenRecord

try:
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import (
        TokenStore,
    )
    from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
except ImportError as err:  # pragma: no cover - exercised without the SDK
    from .sdkversions import current_sdk_import_problem

    raise ImportError(current_sdk_import_problem(err)) from err

log = logging.getLogger(__name__)

# Token fields copied one for one: the SDK's getter/setter suffix is the
# record's field name.
_PLAIN_FIELDS = PLAIN_FIELDS + ("api_domain",)
# (field, getter, setter), named once: the mapping runs on every API call.
_ACCESSORS = tuple((name, f"get_{name}", f"set_{name}") for name in _PLAIN_FIELDS)


class TokenStoreError(SDKException, errors.SqlStoreError):
    """A database failure, as the SDK's SDKException with code TOKEN_STORE.

    The message says what failed and where, never with a token value in
    it; the database's own error is the ``cause`` and ``__cause__``.
    """

    def __init__(self, message: str, cause: BaseException):
        # The SDK would append str(cause) to the message; keep it apart.
        super().__init__(code=TOKEN_STORE, message=message)
        self.cause = cause


class SqlAlchemyStore(TokenStore):
    """Keeps the SDK's OAuth tokens in any database SQLAlchemy reaches.

    url: a SQLAlchemy URL; else ``SQLSTORE_DATABASE_URL``; else the SQLite
        file ``zohooauth.db`` in the working directory.
    engine: an engine of the application's own, used instead of a URL.
    create_schema: run the migrations when the store is made. By default
        only for the SQLite fallback file and in-memory SQLite; on a server
        database the schema is created at deploy time by `sqlstore upgrade`.
    options: connection tuning and leases, see
        ``sqlstore.config.EngineOptions``.
    encryption_keys: Fernet keys (a list, or one comma-separated string);
        tokens and the client secret are then stored encrypted under the
        first, and read under any. None reads ``SQLSTORE_ENCRYPTION_KEYS``;
        an empty list turns encryption off whatever that variable says.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        engine: Optional[Engine] = None,
        create_schema: Optional[bool] = None,
        options: config.EngineOptions = config.EngineOptions(),
        encryption_keys: crypto.Keys = None,
    ):
        self.repository = open_repository(
            url, engine, create_schema, options, encryption_keys
        )
        # Who refreshes an expiring token, or exchanges a new grant token,
        # when many workers meet it at once: None when turned off.
        self.leases = lease.leases_for(self.repository, options)

    @property
    def engine(self) -> Engine:
        return self.repository.engine

    @property
    def encrypted(self) -> bool:
        """Whether this store encrypts the token values it saves."""
        return self.repository.cipher.encrypts

    def __repr__(self) -> str:
        where = config.mask_url(self.engine.url)
        return f"SqlAlchemyStore(url={where!r}, encrypted={self.encrypted})"

    def close(self) -> None:
        """Close the store's pooled connections (it reconnects if used)."""
        self.repository.dispose()

    # -- the SDK's TokenStore methods --------------------------------------

    def find_token(self, token):
        """Fill the token's missing fields from its stored row; return it.

        Returns None, leaving the token as it was, when no row matches.
        """
        probe = to_record(_checked_token(token))
        found = _guarded(self.repository.find, probe)
        if self.leases is not None and not lease.quiet(found):
            found = _guarded(self.leases.settle, probe, found)
        if found is None:
            return None
        fill_token(token, found)
        return token

    def save_token(self, token) -> None:
        """Insert or update the token's row and set its id on the token."""
        try:
            record = to_record(_checked_token(token))
        except (TypeError, ValueError) as err:
            # The SDK swallows what save_token raises: leave a trace.
            log.error("token not saved: %s", err)
            raise
        token.set_id(_guarded(self.repository.save, record))
        if self.leases is not None:
            self.leases.saved(record)

    def delete_token(self, id) -> bool:
        """Delete a row by id; False, not an error, when it was not there."""
        return _guarded(self.repository.delete, id)

    def get_tokens(self) -> List[OAuthToken]:
        return [to_token(record) for record in _guarded(self.repository.all)]

    def delete_tokens(self) -> int:
        return _guarded(self.repository.delete_all)

    def find_token_by_id(self, id) -> Optional[OAuthToken]:
        found = _guarded(self.repository.find_by_id, id)
        if self.leases is not None and not lease.quiet(found):
            found = _guarded(self.leases.settle, None, found)
        return to_token(found) if found is not None else None


# -- object mapping -----------------------------------------------------------


def to_record(token: OAuthToken) -> TokenRecord:
    """The record of an SDK token; expires_in is parsed to milliseconds."""
    values = {name: getattr(token, getter)() for name, getter, _ in _ACCESSORS}
    signature = token.get_user_signature()
    if signature is not None and not isinstance(signature, UserSignature):
        # The SDK's setter takes anything; a bare string is a common slip.
        raise TypeError(
            "token field user_signature must be a zohocrmsdk UserSignature, "
            f"not {type(signature).__name__}"
        )
    values["user_name"] = signature.get_name() if signature is not None else None
    values["expiry_time"] = parse_expires_in(token.get_expires_in())
    return TokenRecord(**values)


def to_token(record: TokenRecord) -> OAuthToken:
    """A new, full SDK token holding the record's values."""
    # With an id the SDK's constructor asks for nothing else.
    token = OAuthToken(id=record.id)
    fill_token(token, record)
    return token


def fill_token(token: OAuthToken, record: TokenRecord) -> None:
    """Set each field the token lacks from the record."""
    for name, getter, setter in _ACCESSORS:
        value = getattr(record, name)
        if value is not None and not getattr(token, getter)():
            getattr(token, setter)(value)
    if token.get_user_signature() is None and record.user_name:
        token.set_user_signature(UserSignature(record.user_name))
    if not token.get_expires_in() and record.expiry_time is not None:
        token.set_expires_in(str(record.expiry_time))


def _checked_token(token) -> OAuthToken:
    return checked_token(token, OAuthToken, "zohocrmsdk")


def _guarded(operation, *args):
    """Run a repository call, raising database failures the SDK's way."""
    return guarded(TokenStoreError, operation, *args)
