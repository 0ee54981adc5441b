"""Column types that behave the same on SQLite, PostgreSQL and MySQL.

Two differences between the databases matter to a token store:

- MySQL and MariaDB compare text through a collation. The common ones
  ignore case, and even the binary ones pad with spaces, so ``'abc'`` and
  ``'abc '`` are the same key there. Ids and lookup keys must match exactly,
  so on MySQL they are kept as UTF-8 bytes in ``VARBINARY`` columns, which
  compare byte by byte everywhere.
- Timestamps come back naive from SQLite and MySQL. ``UtcDateTime`` stores
  naive UTC and always hands back an aware UTC datetime.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

# A UTF-8 character takes at most four bytes: the byte length a
# VARBINARY column needs to hold as many characters as String(n).
_UTF8_MAX_BYTES = 4


class ExactString(TypeDecorator):
    """A string compared byte for byte, without case folding or padding."""

    impl = String
    cache_ok = True

    def __init__(self, length: int):
        super().__init__(length)
        self.max_chars = length

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            size = self.max_chars * _UTF8_MAX_BYTES
            return dialect.type_descriptor(_Utf8Bytes(size))
        # Elsewhere a plain string: no conversion runs on any value, which
        # matters on the lookups the SDK makes before every API call.
        return dialect.type_descriptor(String(self.max_chars))


class _Utf8Bytes(TypeDecorator):
    """Text kept as its UTF-8 bytes in a MySQL VARBINARY column."""

    impl = mysql.VARBINARY
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.encode("utf-8") if value is not None else None

    def process_result_value(self, value, dialect):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8")
        return value


class UtcDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            # MySQL's DATETIME drops fractions of a second unless asked.
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
