"""Token values encrypted at rest: Fernet under one or more keys.

A store made with keys encrypts the refresh, access and grant tokens and
the client secret before they reach the table, under the first key, and
decrypts with any of them, so that a new key can be put first while rows
under the old one are still read. The digests the lookups go through stay
SHA-256 of the plain values: a lookup needs no key and no decryption, and
re-encrypting a row never moves it in an index.

A stored value is either plain text or ``fernet:`` and a Fernet token. The
marker names the scheme, so a later one can sit beside it and a plain value
is never mistaken for ciphertext by guessing. Only the row a lookup found
is decrypted, and only the fields it holds.

``cryptography`` is imported only when keys are given: a store without
them neither needs nor loads it.
"""

from __future__ import annotations

import base64
import os
from typing import List, Optional, Sequence, Union

from . import model
from .errors import ConfigurationError, DecryptionError
from .record import SECRET_FIELDS, TokenRecord

ENV_VAR = "SQLSTORE_ENCRYPTION_KEYS"
MARKER = "fernet:"

Keys = Union[str, bytes, Sequence[Union[str, bytes]], None]

# Nothing to add to a save's values: what a store without keys seals.
_NOTHING: dict = {}


def max_plaintext_bytes(column_chars: int = model.SECRET_LENGTH) -> int:
    """The longest value, in UTF-8 bytes, whose stored form fits the column.

    A Fernet token is a version byte, an 8-byte timestamp, a 16-byte IV,
    the AES-CBC ciphertext (padded to the next whole 16-byte block, a full
    block when already whole) and a 32-byte HMAC, all in padded base64.
    """
    room = (column_chars - len(MARKER)) // 4 * 3  # bytes the base64 can carry
    blocks = (room - 57) // 16  # whole 16-byte blocks after the fixed parts
    return blocks * 16 - 1  # padding always adds at least one byte


MAX_PLAINTEXT_BYTES = max_plaintext_bytes()


def generate_key() -> str:
    """A new random Fernet key, as text for SQLSTORE_ENCRYPTION_KEYS."""
    return _fernet_module().Fernet.generate_key().decode("ascii")


def cipher_for(keys: Keys = None) -> "PlainText | Encrypting":
    """The cipher a store uses: from the keys given, else the environment.

    None reads ``SQLSTORE_ENCRYPTION_KEYS``; an empty list means no keys,
    whatever the environment holds.
    """
    source = "encryption_keys"
    if keys is None:
        keys, source = os.environ.get(ENV_VAR, ""), ENV_VAR
    parsed = split_keys(keys)
    if not parsed:
        return PlainText()
    return Encrypting(parsed, source)


def split_keys(keys: Keys) -> List[bytes]:
    """The keys as bytes, from a comma-separated string or a sequence."""
    if keys is None:
        return []
    if isinstance(keys, (str, bytes)):
        text = keys.decode("ascii", "replace") if isinstance(keys, bytes) else keys
        items = text.split(",")
    else:
        items = list(keys)
    parsed = []
    for item in items:
        if isinstance(item, bytes):
            item = item.decode("ascii", "replace")
        if not isinstance(item, str):
            raise ConfigurationError(
                "encryption keys must be strings or bytes, "
                f"not {type(item).__name__}"
            )
        if item.strip():
            parsed.append(item.strip().encode("ascii", "replace"))
    return parsed


class PlainText:
    """No keys: values are stored as they are, and ciphertext is refused."""

    encrypts = False

    def __repr__(self) -> str:
        return "PlainText()"

    def seal(self, record: TokenRecord) -> dict:
        # A plain value that looked like ciphertext would be read back as
        # such: refused, so that the marker always means what it says.
        for name in SECRET_FIELDS:
            value = getattr(record, name)
            if value is not None and value.startswith(MARKER):
                raise ValueError(
                    f"token field {name} starts with {MARKER!r}, the marker "
                    "of an encrypted value; a store without encryption keys "
                    "cannot keep it"
                )
        return _NOTHING

    def open(self, record: TokenRecord) -> TokenRecord:
        for name in SECRET_FIELDS:
            value = getattr(record, name)
            if value is not None and value.startswith(MARKER):
                raise DecryptionError(
                    f"token row {record.id} holds encrypted values and this "
                    f"store has no encryption keys: set {ENV_VAR} (or pass "
                    "encryption_keys=) to the keys it was encrypted with"
                )
        return record


class Encrypting:
    """Keys given: the first encrypts, every one of them decrypts."""

    encrypts = True

    def __init__(self, keys: List[bytes], source: str = "encryption_keys"):
        fernet = _fernet_module()
        self._fernets = [_fernet(fernet, key, n, len(keys), source)
                         for n, key in enumerate(keys, 1)]
        self._primary = self._fernets[0]
        self._any = fernet.MultiFernet(self._fernets)
        self._invalid = fernet.InvalidToken
        self.key_count = len(keys)

    def __repr__(self) -> str:
        return f"Encrypting(keys={self.key_count})"

    # -- one value ---------------------------------------------------------

    def encrypt(self, name: str, value: str) -> str:
        data = value.encode("utf-8")
        if len(data) > MAX_PLAINTEXT_BYTES:
            raise ValueError(
                f"token field {name} is {len(data)} bytes long in UTF-8; "
                f"encrypted, the column holds at most {MAX_PLAINTEXT_BYTES}"
            )
        return MARKER + self._primary.encrypt(data).decode("ascii")

    def decrypt(self, value: str) -> Optional[str]:
        """The plain value, or None when no key of this store opens it."""
        try:
            data = self._any.decrypt(value[len(MARKER):].encode("ascii"))
        except (self._invalid, UnicodeEncodeError):
            return None
        return data.decode("utf-8")

    def under_first_key(self, value: str) -> bool:
        """Whether a stored value is ciphertext under the encrypting key."""
        if not value.startswith(MARKER):
            return False
        try:
            self._primary.decrypt(value[len(MARKER):].encode("ascii"))
        except (self._invalid, UnicodeEncodeError):
            return False
        return True

    # -- a record ----------------------------------------------------------

    def seal(self, record: TokenRecord) -> dict:
        """The stored form of each secret the record holds."""
        sealed = {}
        for name in SECRET_FIELDS:
            value = getattr(record, name)
            if value is not None:
                sealed[name] = self.encrypt(name, value)
        return sealed

    def open(self, record: TokenRecord) -> TokenRecord:
        """The record with its secrets decrypted, in place."""
        for name in SECRET_FIELDS:
            value = getattr(record, name)
            # A value without the marker is from before encryption was on:
            # read as it is, and encrypted by the row's next save.
            if value is None or not value.startswith(MARKER):
                continue
            plain = self.decrypt(value)
            if plain is None:
                raise DecryptionError(
                    f"token row {record.id}: its {name} opens with none of "
                    f"this store's {self.key_count} encryption key(s); add "
                    f"the key it was encrypted with to {ENV_VAR}"
                )
            setattr(record, name, plain)
        return record


def _fernet_module():
    try:
        from cryptography import fernet
    except ImportError as err:
        raise ConfigurationError(
            "encryption keys were given, but the cryptography package is not "
            'installed: pip install "sqlstore[encryption]"'
        ) from err
    return fernet


def _fernet(fernet, key: bytes, number: int, count: int, source: str):
    # Python's base64 decoder drops what follows the padding, so "KEY=x"
    # would pass as KEY: only the exact encoding of 32 bytes is taken.
    try:
        if _canonical(key):
            return fernet.Fernet(key)
    except (ValueError, TypeError):
        pass
    # Not chained: the library's error may quote the value it refused.
    raise ConfigurationError(
        f"encryption key {number} of {count} (from {source}) is not a Fernet "
        "key: expected 32 bytes in url-safe base64, 44 characters, got "
        f"{len(key)} characters{_why(key)}; make one with `sqlstore keygen`"
    )


def _canonical(key: bytes) -> bool:
    try:
        return base64.urlsafe_b64encode(base64.urlsafe_b64decode(key)) == key
    except ValueError:
        return False


def _why(key: bytes) -> str:
    try:
        size = len(base64.urlsafe_b64decode(key))
    except ValueError:
        return " that are not url-safe base64"
    return f" that decode to {size} bytes"
