"""``LegacySqlAlchemyStore``: the TokenStore of Zoho's older Python SDKs.

``zcrmsdk`` 3.x, ``zohocrmsdk2-0`` and ``zohocrmsdk2-1`` (all imported as
``zcrmsdk``) hand their store the user apart from the token:
``get_token(user, token)``, ``save_token(user, token)``,
``delete_token(token)``, ``get_tokens()``, ``delete_tokens()`` and, in the
2.x distributions, ``get_token_by_id(id, token)``. Their tokens differ:
3.x keeps its fields as plain attributes, 2.x behind getters and setters.

The rows are the same table's, through the same ``TokenRepository`` as
``SqlAlchemyStore``: an application can move to the current SDK and keep
its tokens. The current SDKs (6.0 and later) name a user
``<e-mail>:<org zgid>`` where these name them by e-mail alone; a row saved
under either name belongs to the e-mail's user here, and keeps the name it
has when this store updates it.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from sqlalchemy.engine import Engine

from . import config, crypto, errors
from . import record as records
from .opening import open_repository
from .adapting import PLAIN_FIELDS, TOKEN_STORE, checked_token, guarded
from .expiry import parse_expires_in
from .record import TokenRecord
from .sdkversions import legacy_sdk_import_problem, legacy_zcrmsdk_problem

if legacy_zcrmsdk_problem():  # pragma: no cover - needs zcrmsdk 2.x
    raise ImportError(legacy_zcrmsdk_problem())
try:
    from zcrmsdk.src.com.zoho.api.authenticator import oauth_token as _sdk_token
    from zcrmsdk.src.com.zoho.api.authenticator.store.token_store import (
        TokenStore,
    )
    from zcrmsdk.src.com.zoho.crm.api.exception import SDKException
    from zcrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
except ImportError as err:  # pragma: no cover - exercised without the SDK
    raise ImportError(legacy_sdk_import_problem(err)) from err

OAuthToken = _sdk_token.OAuthToken
# zcrmsdk 3.x builds a token from one value of a named type; 2.x has none.
TokenType = getattr(_sdk_token, "TokenType", None)

log = logging.getLogger(__name__)

# A found row stands for the user's current authorization: these replace
# what the token was configured with, as the SDK's own stores do. The
# others are filled only where the token has none.
_FROM_ROW = ("id", "refresh_token", "access_token")

# 2.x tokens have getters and setters; 3.x tokens plain attributes.
_ACCESSORS = hasattr(OAuthToken, "get_id")


def _get(token, name):
    if _ACCESSORS:
        return getattr(token, f"get_{name}")()
    return getattr(token, name)


def _set(token, name, value) -> None:
    if _ACCESSORS:
        getattr(token, f"set_{name}")(value)
    else:
        setattr(token, name, value)


def _email(user) -> str:
    return user.get_email() if _ACCESSORS else user.email


class LegacyTokenStoreError(SDKException, errors.SqlStoreError):
    """A database failure, as zcrmsdk's SDKException with code TOKEN_STORE.

    The message holds no token value; the database's own error is the
    ``cause`` and ``__cause__``.
    """

    def __init__(self, message: str, cause: BaseException):
        # The SDK would append str(cause) to the message; keep it apart.
        super().__init__(code=TOKEN_STORE, message=message)
        self.cause = cause


class LegacySqlAlchemyStore(TokenStore):
    """Keeps the older SDKs' OAuth tokens in any database SQLAlchemy reaches.

    Takes the same arguments as ``sqlstore.SqlAlchemyStore``, and uses the
    same table: ``url`` (else ``SQLSTORE_DATABASE_URL``, else the SQLite
    file ``zohooauth.db``), or ``engine``; ``create_schema``; ``options``;
    ``encryption_keys`` (else ``SQLSTORE_ENCRYPTION_KEYS``).
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

    @property
    def engine(self) -> Engine:
        return self.repository.engine

    def __repr__(self) -> str:
        return f"LegacySqlAlchemyStore(url={config.mask_url(self.engine.url)!r})"

    def close(self) -> None:
        """Close the store's pooled connections (it reconnects if used)."""
        self.repository.dispose()

    # -- the SDK's TokenStore methods --------------------------------------

    def get_token(self, user, token):
        """Fill the token from the user's stored row and return it; or None.

        The row is the one holding the token's refresh token, else the
        user's row for the token's client app; a grant token the store has
        not seen finds nothing, so that the SDK exchanges it.
        """
        name = _user_name(user)
        probe = to_record(_checked_token(token))
        found = self._find(probe, name)
        if found is None:
            return None
        fill_token(token, found)
        return token

    def save_token(self, user, token) -> None:
        """Insert or update the user's row; set its id on the token."""
        try:
            record = to_record(_checked_token(token))
            record.user_name = _saved_name(_user_name(user), token)
        except (TypeError, ValueError) as err:
            # The SDK wraps and may swallow what save_token raises.
            log.error("token not saved: %s", err)
            raise
        _set(token, "id", _guarded(self.repository.save, record))
        _set(token, "user_mail", record.user_name)

    def delete_token(self, token) -> bool:
        """Delete the token's row; False, not an error, when there is none.

        The row is the token's id's, else the one ``get_token`` would find
        for the token's ``user_mail``.
        """
        probe = to_record(_checked_token(token))
        if not probe.id:
            found = self._find(probe, records.normalize_user_name(probe.user_name))
            if found is None:
                log.info("delete_token: no stored row matches the token")
                return False
            probe.id = found.id
        return _guarded(self.repository.delete, probe.id)

    def get_tokens(self) -> List[OAuthToken]:
        return [to_token(record) for record in _guarded(self.repository.all)]

    def delete_tokens(self) -> int:
        return _guarded(self.repository.delete_all)

    def get_token_by_id(self, id, token):
        """Fill the token from the row with this id and return it; or None."""
        _checked_token(token)
        found = _guarded(self.repository.find_by_id, id)
        if found is None:
            return None
        fill_token(token, found)
        return token

    # -- finding ---------------------------------------------------------

    def _find(self, probe: TokenRecord, user_name) -> Optional[TokenRecord]:
        for key in _probes(probe, user_name):
            found = _guarded(self.repository.find, key)
            if found is not None and _same_user(found.user_name, user_name):
                return found
        return None


def _probes(probe: TokenRecord, user_name):
    """The lookups that may find a legacy token's row, best first."""
    if probe.id:
        yield TokenRecord(id=probe.id)
        return
    client = probe.client_id
    if probe.refresh_token:
        # Exact: the authorization itself, whatever the row's user name.
        yield TokenRecord(client_id=client, refresh_token=probe.refresh_token)
    elif probe.grant_token:
        if user_name:
            yield TokenRecord(
                user_name=user_name, client_id=client, grant_token=probe.grant_token
            )
        yield TokenRecord(client_id=client, grant_token=probe.grant_token)
        return
    if user_name:
        # The user authorized again since the token was configured: the
        # stored, newer authorization is the one to use.
        yield TokenRecord(user_name=user_name, client_id=client)


def _same_user(row_name: Optional[str], user_name: Optional[str]) -> bool:
    """Whether a row's user is the e-mail's: by e-mail, or e-mail:zgid."""
    if row_name is None or user_name is None:
        return True
    return row_name == user_name or row_name.startswith(user_name + ":")


def _saved_name(user_name: str, token) -> str:
    # A row found under the current SDKs' "<e-mail>:<zgid>" keeps that
    # name, so that those SDKs still find it after this one's refresh.
    held = records.normalize_user_name(_get(token, "user_mail"))
    if held and held != user_name and _same_user(held, user_name):
        return held
    return user_name


def _user_name(user) -> str:
    if not isinstance(user, UserSignature):
        raise TypeError(
            "expected a zcrmsdk UserSignature as the user, got "
            f"{type(user).__module__}.{type(user).__name__}"
        )
    name = records.normalize_user_name(_email(user))
    if name is None:
        raise ValueError("the user's e-mail must be a non-empty string")
    return name


# -- object mapping -----------------------------------------------------------


def to_record(token) -> TokenRecord:
    """The record of an SDK token; expires_in is parsed to milliseconds."""
    values = {name: _get(token, name) for name in PLAIN_FIELDS}
    values["user_name"] = _get(token, "user_mail")
    values["expiry_time"] = parse_expires_in(_get(token, "expires_in"))
    return TokenRecord(**values)


def to_token(record: TokenRecord):
    """A new, full SDK token holding the record's values."""
    if _ACCESSORS:
        # With an id the 2.x constructor asks for nothing else.
        token = OAuthToken(id=record.id)
    else:
        # 3.x wants a client id and one token of a named type, even to
        # hold a stored row; every field is set from the row below.
        kind = TokenType.GRANT if record.grant_token else TokenType.REFRESH
        value = record.grant_token or record.refresh_token or ""
        token = OAuthToken(record.client_id or "", record.client_secret, value, kind)
        _set(token, "refresh_token", None)
        _set(token, "grant_token", None)
    fill_token(token, record)
    return token


def fill_token(token, record: TokenRecord) -> None:
    """Set the row's authorization on the token, and what else it lacks."""
    for name in PLAIN_FIELDS:
        value = getattr(record, name)
        if value is None:
            continue
        if name in _FROM_ROW or not _get(token, name):
            _set(token, name, value)
    if record.user_name:
        _set(token, "user_mail", record.user_name)
    if record.expiry_time is not None:
        _set(token, "expires_in", str(record.expiry_time))
    elif not _ACCESSORS:
        # zcrmsdk 3.x reads the expiry as an integer on every call: an
        # unknown one is taken as passed, so that it refreshes.
        _set(token, "expires_in", "0")


def _checked_token(token):
    return checked_token(token, OAuthToken, "zcrmsdk")


def _guarded(operation, *args):
    """Run a repository call, raising database failures the SDK's way."""
    return guarded(LegacyTokenStoreError, operation, *args)
