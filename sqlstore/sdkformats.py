"""The token formats of Zoho's own stores: their CSV file and MySQL table.

Both hold one row per saved token with the same ten fields, all text:

- ``FileStore`` (CSV): a header row, then one line per token. The current
  SDKs (``zohocrmsdk5-0`` to ``8-0``) write ten columns, ending in
  ``api_domain``. The older ``zcrmsdk`` family wrote nine, without it, and
  called the user column ``user_mail``; the current SDKs widen such a file
  to ten columns when they open it.
- ``DBStore`` (MySQL): the table its documentation asks users to create,
  ``id varchar(10)`` as primary key, every other column ``varchar(255)``
  except ``expiry_time varchar(20)``, and no other key. The older family's
  table has ``user_mail`` and no ``api_domain``.

Either way ``expiry_time`` is epoch milliseconds written as text, an empty
field means "not known", and nothing stops one user appearing in several
rows. This module reads the rows as they are; deciding what to keep of
them is ``importing``'s job.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from typing import Dict, List, Optional, Tuple

from sqlalchemy import Integer, MetaData, String, Table, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from .config import create_store_engine, mask_url
from .errors import SqlStoreError
from .record import TokenRecord


class SourceError(SqlStoreError):
    """A file or table to import from cannot be read as the SDK's format."""


# The current header, which ``export`` writes. Note ``redirect_uri``: the
# file says uri where the table and the token say url.
CSV_HEADER = (
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_uri",
    "api_domain",
)
# Nine columns: the zcrmsdk family's file, or a current one never widened.
OLDER_CSV_HEADERS = (
    ("id", "user_mail") + CSV_HEADER[2:9],
    CSV_HEADER[:9],
)

# The SDK's name of a field, where it differs from the record's.
_RECORD_FIELD = {
    "user_mail": "user_name",
    "redirect_uri": "redirect_url",
}
# The columns of the SDK's MySQL table, in the order DBStore reads them:
# the file's, where the table says url.
TABLE_COLUMNS = tuple(
    "redirect_url" if name == "redirect_uri" else name for name in CSV_HEADER
)
_REQUIRED_TABLE_COLUMNS = frozenset(TABLE_COLUMNS) - {"user_name", "api_domain"}
# Columns of sqlstore's own table, which shares the SDK's column names.
_OUR_COLUMNS = frozenset({"refresh_token_digest", "access_token_digest"})
# What the SDK accepts as a table name; anything else is refused unread.
_TABLE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
# Epoch milliseconds as the SDK writes them (it reads them with int()).
_MILLISECONDS = re.compile(r"\s*([0-9]{1,19})\s*")


@dataclasses.dataclass(frozen=True)
class SourceRow:
    """One row of a file or table, before anything is checked.

    where: how to find it again, e.g. "line 7" or "id 12".
    order: sorts rows in the order their store wrote them.
    values: the record's field names and the row's text ('' is None).
    problem: why the row has no values, when it could not be split.
    """

    where: str
    order: Tuple
    values: Dict[str, Optional[str]]
    problem: Optional[str] = None


# -- the CSV file --------------------------------------------------------------


# csv's own limit, 131,072 characters a field, would end the whole import
# at one oversized field; with this one such a field is read, and its row
# refused by the length checks like any other too long for its column.
_CSV_FIELD_LIMIT = 16 * 1024 * 1024


def read_csv(path: str) -> Tuple[str, List[SourceRow]]:
    """The header's description and every row of a FileStore file."""
    reader = None
    previous_limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            return _read_csv_rows(reader, path)
    except OSError as err:
        raise SourceError(f"cannot read {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        # Not chained: the error holds the bytes around the bad one.
        raise SourceError(
            f"{path} is not UTF-8 text (a bad byte at offset {err.start})"
        ) from None
    except csv.Error as err:
        where = f" (line {reader.line_num})" if reader is not None else ""
        raise SourceError(
            f"{path} is not a CSV file the SDK wrote{where}: {err}"
        ) from None
    finally:
        csv.field_size_limit(previous_limit)


def _read_csv_rows(reader, path: str) -> Tuple[str, List[SourceRow]]:
    header = next(reader, None)
    if header is None:
        raise SourceError(f"{path} is empty: expected the header {_shown(CSV_HEADER)}")
    names = _header_names(header, path)
    rows = []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue  # blank lines, which older stores left behind
        line = reader.line_num
        rows.append(_csv_row(names, fields, line))
    return f"{len(names)}-column header", rows


def _header_names(header: List[str], path: str) -> Tuple[str, ...]:
    found = tuple(name.strip().lower() for name in header)
    if found == CSV_HEADER or found in OLDER_CSV_HEADERS:
        return found
    raise SourceError(
        f"{path} does not start with the SDK's header: expected "
        f"{_shown(CSV_HEADER)} (or its 9 first columns), found "
        f"{len(found)} columns"
    )


def _csv_row(names: Tuple[str, ...], fields: List[str], line: int) -> SourceRow:
    where = f"line {line}"
    if len(fields) != len(names):
        # Kept as a row with no values so that it is reported, not lost.
        problem = f"it has {len(fields)} fields, where the header has {len(names)}"
        return SourceRow(where, (line,), {}, problem)
    values = {
        _RECORD_FIELD.get(name, name): field or None
        for name, field in zip(names, fields)
    }
    return SourceRow(where, (line,), values)


def _shown(names) -> str:
    return ",".join(names)


def csv_line(record: TokenRecord, token_id: Optional[str] = None) -> List[str]:
    """A record as the fields of one line under ``CSV_HEADER``."""
    expiry = "" if record.expiry_time is None else str(record.expiry_time)
    values = {**dataclasses.asdict(record), "expiry_time": expiry}
    values["id"] = token_id if token_id is not None else record.id
    return [values[_RECORD_FIELD.get(name, name)] or "" for name in CSV_HEADER]


# -- the MySQL table -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TableShape:
    """How a table compares with the SDK's documented one.

    user_column: ``user_name``, or ``user_mail`` in the older family's.
    extra: columns the SDK's table does not have, which an import drops.
    """

    name: str
    user_column: str
    extra: Tuple[str, ...]

    def describe(self) -> str:
        shown = f"the shape of the SDK DBStore's table {self.name}"
        if self.extra:
            shown += f", with columns it has not: {', '.join(self.extra)}"
        return shown


def check_table_name(name: str) -> str:
    """The name itself, if it is one the SDK would accept."""
    if not _TABLE_NAME.fullmatch(name or ""):
        raise SourceError("a table name must be 1 to 64 letters, digits or underscores")
    return name


def table_shape(connection: Connection, name: str) -> Optional[TableShape]:
    """The table's SDK shape, or None if it is missing or not shaped so."""
    inspector = inspect(connection)
    if not inspector.has_table(name):
        return None
    columns = {c["name"].lower(): c["type"] for c in inspector.get_columns(name)}
    user_column = "user_name" if "user_name" in columns else "user_mail"
    if user_column not in columns or not _REQUIRED_TABLE_COLUMNS <= set(columns):
        return None
    if _OUR_COLUMNS & set(columns):
        return None
    if not all(_is_text(columns[n]) for n in _REQUIRED_TABLE_COLUMNS - {"expiry_time"}):
        return None
    if not isinstance(columns["expiry_time"], (String, Integer)):
        return None
    known = set(TABLE_COLUMNS) | {"user_mail"}
    extra = tuple(sorted(n for n in columns if n not in known))
    return TableShape(name, user_column, extra)


def _is_text(column_type) -> bool:
    return isinstance(column_type, String)


def read_table_at(url: str, name: str) -> List[SourceRow]:
    """Every row of a DBStore table in the database at ``url``."""
    check_table_name(name)
    engine = create_store_engine(url)
    shown = mask_url(engine.url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(name):
                raise SourceError(f"{shown} has no table {name}")
            return read_table(connection, name)
    except SQLAlchemyError as err:
        raise SourceError(f"cannot read {name} at {shown}: {_first_line(err)}") from err
    finally:
        engine.dispose()


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_table(connection: Connection, name: str) -> List[SourceRow]:
    """Every row of a DBStore table, in the order the SDK numbered them."""
    check_table_name(name)
    shape = table_shape(connection, name)
    if shape is None:
        raise SourceError(
            f"{name} is not shaped like the SDK DBStore's table: expected the "
            f"columns {_shown(TABLE_COLUMNS)}"
        )
    table = Table(name, MetaData(), autoload_with=connection)
    columns = {c.name.lower(): c for c in table.columns}
    names = [shape.user_column if n == "user_name" else n for n in TABLE_COLUMNS]
    wanted = [n for n in names if n in columns]
    statement = select(*(columns[n] for n in wanted))
    rows = [_table_row(dict(zip(wanted, row))) for row in connection.execute(statement)]
    return sorted(rows, key=lambda row: row.order)


def _table_row(raw: dict) -> SourceRow:
    values = {}
    for name, value in raw.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value).decode("utf-8", errors="replace")
        elif value is not None:
            value = str(value)
        values[_RECORD_FIELD.get(name, name)] = value or None
    token_id = values.get("id") or ""
    # DBStore numbers its rows 1, 2, 3...: the larger number is the later
    # row. Ids of any other form come after them, in text order.
    if token_id.isdigit():
        order = (0, int(token_id), token_id)
    else:
        order = (1, 0, token_id)
    return SourceRow(f"id {token_id}", order, values)


# -- from text to a record -----------------------------------------------------


def to_record(row: SourceRow) -> TokenRecord:
    """The row as a record; ValueError names what is wrong (never a value)."""
    if row.problem is not None:
        raise ValueError(row.problem)
    values = row.values
    expiry = values.get("expiry_time")
    return TokenRecord(
        id=values.get("id"),
        user_name=values.get("user_name"),
        client_id=values.get("client_id"),
        client_secret=values.get("client_secret"),
        refresh_token=values.get("refresh_token"),
        access_token=values.get("access_token"),
        grant_token=values.get("grant_token"),
        redirect_url=values.get("redirect_url"),
        api_domain=values.get("api_domain"),
        expiry_time=_milliseconds(expiry),
    )


def _milliseconds(text: Optional[str]) -> Optional[int]:
    if text is None or not text.strip():
        return None
    found = _MILLISECONDS.fullmatch(text)
    if found is None:
        raise ValueError(
            "its expiry_time is not epoch milliseconds (digits only, such "
            "as 1767225600000)"
        )
    return int(found.group(1))
