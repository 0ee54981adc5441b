"""Which row a partial token points at, as statements built once.

A lookup is the key a probe selects by (id, user name or one token's
digest) and the values that narrow it (client id, api_domain, grant
token). There are only a few such shapes, so each one's statement is built
and compiled once and then run with bound parameters: the hot path does
no statement construction at all.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import bindparam, select
from sqlalchemy.sql import Select

from .model import oauthtoken as table
from .record import TokenRecord, digest

_DIGEST_KEYS = ("access_token", "grant_token", "refresh_token")

# What a found row is read from: a TokenRecord's fields, in their order,
# so that a row becomes a record without going through names. The digests
# are for finding rows and are never read back.
RECORD_COLUMNS = tuple(
    table.c[field.name] for field in dataclasses.fields(TokenRecord)
)


@dataclass(frozen=True)
class Lookup:
    """The shape of a lookup: its key and which narrowing values apply."""

    key: str
    by_client: bool = False
    by_domain: bool = False
    by_grant: bool = False

    def parameters(self, probe: TokenRecord) -> dict:
        """The bound values of this lookup, taken from the probe."""
        value = getattr(probe, self.key)
        if self.key in _DIGEST_KEYS:
            value = digest(value)
        values = {"key": value}
        if self.by_client:
            values["narrow_client"] = probe.client_id
        if self.by_domain:
            values["narrow_domain"] = probe.api_domain
        if self.by_grant:
            values["narrow_grant"] = digest(probe.grant_token)
        return values


def lookup_for(probe: TokenRecord) -> Optional[Lookup]:
    """The lookup a normalized probe selects by, or None if it has no key.

    The key is the first the probe carries of: id; user name; access token
    (when no client id is given); grant token; refresh token; access token.
    """
    if probe.id:
        return _lookup("id", False, False, False)
    key = _key_of(probe)
    if key is None:
        return None
    return _lookup(
        key,
        bool(probe.client_id),
        bool(probe.api_domain),
        # A grant token the store has not seen is a new authorization: the
        # SDK must exchange it rather than reuse the user's stored tokens.
        key == "user_name" and bool(probe.grant_token),
    )


@functools.lru_cache(maxsize=None)
def _lookup(key: str, by_client: bool, by_domain: bool, by_grant: bool) -> Lookup:
    # A handful of shapes, each made once: the statement caches below are
    # keyed by them, and hashing a ready instance is cheaper than a new one.
    return Lookup(key, by_client, by_domain, by_grant)


def _key_of(probe: TokenRecord) -> Optional[str]:
    if probe.user_name:
        return "user_name"
    if probe.access_token and not probe.client_id:
        return "access_token"
    for name in ("grant_token", "refresh_token", "access_token"):
        if getattr(probe, name):
            return name
    return None


@functools.lru_cache(maxsize=None)
def find_statement(lookup: Lookup) -> Select:
    """SELECT of every row the lookup matches: one, or a user's few."""
    return select(*RECORD_COLUMNS).where(_condition(lookup))


@functools.lru_cache(maxsize=None)
def id_statement(lookup: Lookup) -> Select:
    """SELECT of the matching rows' ids, for a save deciding what to update."""
    return select(table.c.id, table.c.updated_at).where(_condition(lookup))


def newest(rows):
    """The most recently saved of the rows a lookup matched, or None.

    A user with rows for several client apps or data centres matches all
    of them when the token names neither. Picking here, rather than with
    ORDER BY ... LIMIT 1, spares the database a sort on every lookup.
    """
    return max(rows, key=_recency, default=None)


def _recency(row):
    return (row.updated_at, row.id)


def _condition(lookup: Lookup):
    if lookup.key in _DIGEST_KEYS:
        column = table.c[f"{lookup.key}_digest"]
    else:
        column = table.c[lookup.key]
    condition = column == bindparam("key")
    if lookup.by_client:
        condition &= table.c.client_id == bindparam("narrow_client")
    if lookup.by_domain:
        condition &= table.c.api_domain == bindparam("narrow_domain")
    if lookup.by_grant:
        condition &= table.c.grant_token_digest == bindparam("narrow_grant")
    return condition
