"""What the token table holds, for an operator: counts, masked rows, pruning.

Counts and the choice of rows to prune read only the columns that hold no
secret (ids, user names, digests, expiry and timestamps). Rows shown to a
person go through the record layer and show each secret as
``record.mask_secret`` does: four characters, the length, a fingerprint.

Prune policy: a row goes when

- it has no refresh token and its access token has expired, so the SDK
  can neither use it nor renew it; or it has no refresh token, no access
  token, and was last saved more than an hour ago (a grant token alone is
  only good for minutes); or
- with ``unused_days``: it was last saved more than that many days ago.
  The SDK saves a token on every grant exchange and every refresh, about
  once an hour while a user's token is in use; lookups write nothing, so
  "saved" is the nearest the table knows of "used".

A row with no refresh token but an access token that has not expired, or
whose expiry is unknown, is kept: it may still be in use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import List, Optional

from sqlalchemy import and_, case, delete, func, inspect, or_, select
from sqlalchemy import table as table_named
from sqlalchemy.engine import Connection, Engine

from . import migrate
from .adopt import ADOPTING_TABLE, BACKUP_TABLE
from .config import mask_url
from .core import tool_repository
from .errors import SchemaError
from .model import TABLE_NAME
from .model import oauthtoken as table
from .record import SECRET_FIELDS, TokenRecord, mask_secret, normalize_user_name
from .sdkformats import table_shape
from .types import utc_now

# A grant token is good for minutes; a row holding nothing else is dead
# well within this.
GRANT_GRACE = dt.timedelta(hours=1)
# Rows deleted per statement.
_DELETE_BATCH = 500


def _users(count: int) -> str:
    return "1 user" if count == 1 else f"{count} users"


def now_ms() -> int:
    return int(time.time() * 1000)


# -- status --------------------------------------------------------------------


@dataclasses.dataclass
class Status:
    """The counts ``sqlstore status`` prints."""

    backend: str
    url: str
    schema: str
    revision: Optional[str]
    head: str
    at_head: bool
    tokens: Optional[int] = None
    users: Optional[int] = None
    expired: Optional[int] = None
    without_refresh_token: Optional[int] = None
    users_without_refresh_token: Optional[int] = None
    notes: List[str] = dataclasses.field(default_factory=list)

    def lines(self) -> List[str]:
        lines = [
            f"backend: {self.backend}",
            f"database: {self.url}",
            f"schema: {self.schema}",
        ]
        if self.tokens is not None:
            lines += [
                f"tokens: {self.tokens} ({_users(self.users)})",
                f"access tokens expired: {self.expired}",
                f"tokens without a refresh token: {self.without_refresh_token} "
                f"({_users(self.users_without_refresh_token)})",
            ]
        return lines + self.notes

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def status(engine: Engine) -> Status:
    state = migrate.schema_state(engine)
    found = Status(
        backend=engine.dialect.name,
        url=mask_url(engine.url),
        schema=state.describe(),
        revision=state.current,
        head=state.head,
        at_head=state.is_current,
    )
    with engine.connect() as conn:
        if state.is_current:
            _count_tokens(conn, found)
        found.notes = _notes(conn, state)
    return found


def _count_tokens(conn: Connection, found: Status) -> None:
    no_refresh = table.c.refresh_token_digest.is_(None)
    counts = conn.execute(
        select(
            func.count(),
            func.count(table.c.user_name.distinct()),
            # COUNT of a CASE rather than FILTER, which MySQL lacks.
            func.count(case((table.c.expiry_time < now_ms(), 1))),
            func.count(case((no_refresh, 1))),
        )
    ).one()
    found.tokens, found.users, found.expired, found.without_refresh_token = counts
    found.users_without_refresh_token = conn.execute(
        select(func.count(table.c.user_name.distinct())).where(no_refresh)
    ).scalar()


def _notes(conn: Connection, state: migrate.SchemaState) -> List[str]:
    notes = []
    if state.status is migrate.SchemaStatus.UNVERSIONED:
        shape = table_shape(conn, TABLE_NAME)
        if shape is not None:
            notes.append(
                f"{TABLE_NAME} is the SDK DBStore's table "
                f"({_row_count(conn, TABLE_NAME)} rows): `sqlstore upgrade` "
                "adopts it"
            )
    if inspect(conn).has_table(ADOPTING_TABLE):
        notes.append(
            f"{ADOPTING_TABLE}: an adoption of the SDK's table was cut "
            "short; `sqlstore upgrade` finishes it"
        )
    if inspect(conn).has_table(BACKUP_TABLE):
        notes.append(
            f"{BACKUP_TABLE}: the SDK's table as it was before its adoption "
            f"({_row_count(conn, BACKUP_TABLE)} rows), kept for you to drop"
        )
    return notes


def _row_count(conn: Connection, name: str) -> int:
    return conn.execute(select(func.count()).select_from(table_named(name))).scalar()


def require_table(engine: Engine) -> None:
    """Raise SchemaError, saying what to run, unless the table is at head."""
    state = migrate.schema_state(engine)
    if state.is_current:
        return
    shown = mask_url(engine.url)
    advice = "run `sqlstore upgrade`"
    if state.status is migrate.SchemaStatus.UNVERSIONED:
        with engine.connect() as conn:
            if table_shape(conn, TABLE_NAME) is not None:
                advice = "it is the SDK DBStore's table: `sqlstore upgrade` adopts it"
    raise SchemaError(
        f"the token table of {shown} is not ready ({state.describe()}); {advice}"
    )


# -- rows as shown -------------------------------------------------------------


def view(record: TokenRecord, now: Optional[int] = None) -> dict:
    """A record as it may be shown: every secret masked."""
    now = now_ms() if now is None else now
    expiry = record.expiry_time
    shown = {
        "id": record.id,
        "user_name": record.user_name,
        "client_id": record.client_id,
        "api_domain": record.api_domain,
        "expiry_time": expiry,
        "expires_at": _iso_ms(expiry),
        "expired": None if expiry is None else expiry < now,
        "redirect_url": record.redirect_url,
    }
    shown.update({name: mask_secret(getattr(record, name)) for name in SECRET_FIELDS})
    shown["created_at"] = _iso(record.created_at)
    shown["updated_at"] = _iso(record.updated_at)
    return shown


def _iso_ms(milliseconds: Optional[int]) -> Optional[str]:
    if milliseconds is None:
        return None
    try:
        moment = dt.datetime.fromtimestamp(milliseconds / 1000, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None  # beyond what a datetime holds
    return _iso(moment)


def _iso(moment: Optional[dt.datetime]) -> Optional[str]:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def tokens(engine: Engine, user: Optional[str] = None) -> List[TokenRecord]:
    """Every stored record, or one user's, oldest first."""
    found = tool_repository(engine).all()
    if user is None:
        return found
    wanted = normalize_user_name(user)
    return [record for record in found if record.user_name == wanted]


# -- pruning -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pruned:
    """A row the policy selects, and the first rule that selects it."""

    id: str
    user_name: Optional[str]
    reason: str


@dataclasses.dataclass
class PruneResult:
    """The rows selected, and how many were deleted (0 on a dry run).

    A row saved again between its selection and the delete no longer
    meets the policy and is kept, so ``deleted`` can be the smaller.
    """

    selected: List[Pruned]
    deleted: int
    dry_run: bool

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def prune(
    engine: Engine, *, unused_days: Optional[float] = None, dry_run: bool = False
) -> PruneResult:
    """Delete (or with dry_run, list) the rows the prune policy selects."""
    if unused_days is not None and unused_days < 0:
        raise ValueError("unused_days must be 0 or more")
    rules = _rules(unused_days)
    with engine.begin() as conn:
        chosen = _chosen(conn, rules)
        deleted = 0
        if not dry_run:
            deleted = _delete(conn, [row.id for row in chosen], rules)
    return PruneResult(chosen, deleted, dry_run)


def _rules(unused_days: Optional[float]) -> List[tuple]:
    now = utc_now()
    no_refresh = table.c.refresh_token_digest.is_(None)
    expired = and_(no_refresh, table.c.expiry_time < now_ms())
    stale_grant = and_(
        no_refresh,
        table.c.access_token_digest.is_(None),
        table.c.updated_at < now - GRANT_GRACE,
    )
    rules = [
        ("no refresh token, access token expired", expired),
        ("no refresh or access token, saved over an hour ago", stale_grant),
    ]
    if unused_days is not None:
        cutoff = now - dt.timedelta(days=unused_days)
        rules.append(
            (f"not saved for {unused_days:g} days", table.c.updated_at < cutoff)
        )
    return rules


def _chosen(conn: Connection, rules: List[tuple]) -> List[Pruned]:
    chosen = {}
    for reason, condition in rules:
        statement = select(table.c.id, table.c.user_name).where(condition)
        for row in conn.execute(statement.order_by(table.c.id)):
            chosen.setdefault(row.id, Pruned(row.id, row.user_name, reason))
    return list(chosen.values())


def _delete(conn: Connection, ids: List[str], rules: List[tuple]) -> int:
    # The rules again: a row refreshed since it was chosen stays.
    still = or_(*(condition for _, condition in rules))
    deleted = 0
    for start in range(0, len(ids), _DELETE_BATCH):
        batch = ids[start : start + _DELETE_BATCH]
        statement = delete(table).where(table.c.id.in_(batch)).where(still)
        deleted += conn.execute(statement).rowcount
    return deleted
