"""The SDK-free shape of one stored token, and the rules its fields obey.

Adapters turn the SDK's token objects into ``TokenRecord`` values and back;
the queries in ``core`` only ever see records. Validation lives here so that
every backend refuses the same values with the same message: SQLite would
otherwise store what PostgreSQL or MySQL reject, or the reverse.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import unicodedata
from typing import Iterator, Optional

from . import model

# Fields whose values are secrets: never logged, printed or put in a repr.
SECRET_FIELDS = ("client_secret", "access_token", "refresh_token", "grant_token")
TOKEN_FIELDS = ("access_token", "refresh_token", "grant_token")

MAX_LENGTHS = {
    "id": model.ID_LENGTH,
    "user_name": model.USER_NAME_LENGTH,
    "client_id": model.CLIENT_ID_LENGTH,
    "api_domain": model.API_DOMAIN_LENGTH,
    "client_secret": model.SECRET_LENGTH,
    "redirect_url": model.URL_LENGTH,
    "access_token": model.SECRET_LENGTH,
    "refresh_token": model.SECRET_LENGTH,
    "grant_token": model.SECRET_LENGTH,
}

_TEXT_FIELDS = tuple(MAX_LENGTHS)

# Zoho's tokens are about 70 characters, its client secrets 42.
_SHOWN_FROM_LENGTH = 24

# expiry_time is a BIGINT column: a signed 64-bit integer.
_BIGINT_MAX = 2**63 - 1


@dataclasses.dataclass
class TokenRecord:
    """One user's authorization for one client app in one data centre.

    ``None`` means "not known". ``expiry_time`` is in epoch milliseconds.
    """

    id: Optional[str] = None
    user_name: Optional[str] = None
    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    refresh_token: Optional[str] = None
    access_token: Optional[str] = None
    grant_token: Optional[str] = None
    redirect_url: Optional[str] = None
    api_domain: Optional[str] = None
    expiry_time: Optional[int] = None
    created_at: Optional[dt.datetime] = None
    updated_at: Optional[dt.datetime] = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self._public())
        held = [name for name in SECRET_FIELDS if getattr(self, name)]
        return f"TokenRecord({shown}, holds={held})"

    def _public(self) -> Iterator[tuple]:
        for name in ("id", "user_name", "client_id", "api_domain"):
            yield name, getattr(self, name)
        yield "expiry_time", self.expiry_time

    def secret_values(self) -> list:
        """The secrets this record holds, for scrubbing them from messages."""
        return [v for v in (getattr(self, n) for n in SECRET_FIELDS) if v]


def digest(value: Optional[str]) -> Optional[str]:
    """SHA-256 of a token, the value lookups and unique keys go through."""
    if not value:
        return None
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalize_user_name(name: Optional[str]) -> Optional[str]:
    """The stored form of a user name: NFC, trimmed and lower-cased.

    Zoho treats e-mail addresses without regard to case, and names typed
    into configuration files pick up stray spaces; both would otherwise
    give one user two rows. An empty name means "no user".
    """
    if name is None:
        return None
    # NFC first, so that an accented letter typed two ways is one name.
    name = unicodedata.normalize("NFC", name).strip().lower()
    return name or None


def check_token_id(token_id: object) -> str:
    """The id itself, or a TypeError/ValueError naming what was expected."""
    if not isinstance(token_id, str):
        raise TypeError(
            f"token id must be a non-empty string, not {type(token_id).__name__}"
        )
    if not token_id:
        raise ValueError("token id must be a non-empty string, got ''")
    _check_text("id", token_id)
    return token_id


def normalized(record: TokenRecord) -> TokenRecord:
    """A validated copy with empty strings read as "not known".

    Every find and save passes through here, so it makes one pass over the
    fields and leaves the record's dataclass machinery alone.
    """
    values = dict(record.__dict__)
    for name in _TEXT_FIELDS:
        value = values[name]
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(
                f"token field {name} must be a string or None, "
                f"not {type(value).__name__}"
            )
        if not value and name != "id":
            values[name] = None
    _check_expiry(values["expiry_time"])
    values["user_name"] = normalize_user_name(values["user_name"])
    if values["id"] is not None:
        check_token_id(values["id"])
    for name in _TEXT_FIELDS:
        value = values[name]
        if value is not None:
            _check_text(name, value)
    return TokenRecord(**values)


def _check_expiry(expiry) -> None:
    if expiry is None:
        return
    if isinstance(expiry, bool) or not isinstance(expiry, int):
        raise TypeError(
            "token field expiry_time must be an integer of epoch milliseconds"
        )
    if not 0 <= expiry <= _BIGINT_MAX:
        raise ValueError(
            "token field expiry_time must be epoch milliseconds between "
            f"0 and {_BIGINT_MAX}"
        )


def _check_text(name: str, value: str) -> None:
    limit = MAX_LENGTHS[name]
    if len(value) > limit:
        raise ValueError(
            f"token field {name} is {len(value)} characters long; "
            f"the column holds at most {limit}"
        )
    if "\x00" in value:
        # PostgreSQL cannot store NUL in text; refusing it everywhere keeps
        # the backends interchangeable.
        raise ValueError(f"token field {name} contains a NUL character")
    if value.isascii():  # a flag of the string: the usual case costs nothing
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        position = err.start
    else:
        return
    # Not chained to the UnicodeEncodeError: it holds the whole value.
    raise ValueError(
        f"token field {name} is not valid Unicode text: a lone surrogate "
        f"at position {position}"
    )


def mask_secret(value: Optional[str]) -> str:
    """A secret as it may be shown: four characters, length, fingerprint.

    The fingerprint is the start of the value's SHA-256, enough to see that
    a token changed and nothing to recover it from. A value shorter than
    Zoho's tokens and secrets shows only its length: four of its
    characters would be much of it, and a short value could be found
    again from its fingerprint by trying every one.
    """
    if not value:
        return "-"
    if len(value) < _SHOWN_FROM_LENGTH:
        return f"…({len(value)} chars)"
    return f"{value[:4]}…({len(value)} chars, #{digest(value)[:6]})"
