"""One worker calls Zoho; the others wait for its result in the database.

When an access token expires, every worker that needs it finds it expired
at about the same moment, and each one's SDK would refresh it: Zoho allows
only a few access tokens per refresh token in ten minutes, and answers
"Access Denied" past that. A grant token is single-use: of two workers
exchanging it, one fails with invalid_code. The store settles both at the
point where the SDK looks its token up, without changing the SDK:

- A refresh lease. A lookup that finds an access token the SDK is about to
  refresh (its rule: no access token, or less than 5 s left) takes a lease
  on that row with one conditional UPDATE, and hands the token back as it
  is: that worker's SDK refreshes and saves, and the save ends the lease.
  A lookup that finds the lease taken polls the row until its access token
  changes, and hands back the fresh one, so its SDK does not refresh.
- A grant claim. A lookup by a grant token that finds nothing, when the
  SDK will exchange that grant, inserts a claim row keyed by the grant
  token's digest into ``oauthtoken_claim``. The one insert that succeeds
  hands back nothing, so its SDK exchanges the grant and saves; the others
  poll until that save can be found, and hand it back.

A lease or a claim expires after ``lease_seconds`` (a dead holder is then
taken over by one waiter), and a waiter gives up after ``lease_wait``,
handing back what it found: its SDK then calls Zoho itself, which is what
would have happened without any of this. No transaction stays open while
a worker waits or talks to Zoho: every statement here commits on its own.

Clocks: lease expiry is on the database's clock, which all workers share.
Whether a token is about to be refreshed is decided on this host's clock,
exactly as the SDK decides it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator, Optional

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from . import errors
from .config import EngineOptions
from .core import TokenRepository
from .dbclock import database_now_ms
from .lookup import RECORD_COLUMNS
from .model import oauthtoken as table
from .model import oauthtoken_claim as claims
from .record import TokenRecord, digest

log = logging.getLogger(__name__)

# The SDK (zohocrmsdk8-0 7.0.0, OAuthToken.get_token) refreshes a token
# whose expires_in is less than this many milliseconds away.
SDK_REFRESH_MARGIN_MS = 5000
# A token this close to the SDK's margin is waited out, then leased: the
# SDK reads its clock a moment after the store does, and a token that was
# just outside the margin for the store could be inside it for the SDK.
EDGE_MS = 100
# Polls start quick (a refresh at Zoho takes a few hundred milliseconds)
# and slow down, so that many waiters do not hammer the database.
FIRST_PAUSE = 0.02
LONGEST_PAUSE = 0.25

_QUIET_MS = SDK_REFRESH_MARGIN_MS + EDGE_MS

SUPPORTED_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")

_NOW = database_now_ms()
_LEASE_OPEN = table.c.lease_until.is_(None) | (table.c.lease_until <= _NOW)
_TAKE = (
    update(table)
    .where(table.c.id == bindparam("row_id"))
    # A thread that comes back for a row it leased is its refresher still:
    # its earlier attempt ended without a save.
    .where(_LEASE_OPEN | (table.c.lease_owner == bindparam("previous")))
    # updated_at stays: a lease is not a save, and lookups pick the most
    # recently saved of a user's rows by it.
    .values(
        lease_owner=bindparam("owner"),
        lease_until=_NOW + bindparam("lease_ms"),
        updated_at=table.c.updated_at,
    )
)
# The lease is taken only while the row still holds the token that was
# found: once another worker's refresh is saved, there is nothing to lease.
_TAKE_SAME_ACCESS = _TAKE.where(table.c.access_token_digest == bindparam("seen_access"))
_TAKE_NO_ACCESS = _TAKE.where(table.c.access_token_digest.is_(None))
# The record's columns first, as the repository reads a row, then the
# lease's state.
_POLL_ROW = select(
    *RECORD_COLUMNS, table.c.lease_until, _NOW.label("database_now")
).where(table.c.id == bindparam("key"))

_CLAIM_STATE = select(claims.c.lease_until, _NOW.label("database_now")).where(
    claims.c.grant_token_digest == bindparam("grant")
)
_DROP_EXPIRED_CLAIMS = delete(claims).where(claims.c.lease_until <= _NOW)
_DROP_OWN_CLAIM = (
    delete(claims)
    .where(claims.c.grant_token_digest == bindparam("grant"))
    .where(claims.c.lease_owner == bindparam("owner"))
)
_RENEW_OWN_CLAIM = (
    update(claims)
    .where(claims.c.grant_token_digest == bindparam("grant"))
    .where(claims.c.lease_owner == bindparam("previous"))
    .values(lease_owner=bindparam("owner"), lease_until=_NOW + bindparam("lease_ms"))
)
_CLAIM_VALUES = {
    "grant_token_digest": bindparam("grant"),
    "lease_owner": bindparam("owner"),
    "lease_until": _NOW + bindparam("lease_ms"),
}


@dataclass(frozen=True)
class LeaseSettings:
    """The lease options, as the leases use them: lease length and wait."""

    lease_ms: int
    wait: float

    @classmethod
    def from_options(cls, options: EngineOptions) -> LeaseSettings:
        # EngineOptions has checked both when it was made.
        lease_ms = max(1, round(options.lease_seconds * 1000))
        return cls(lease_ms=lease_ms, wait=float(options.lease_wait))


def leases_for(repository: TokenRepository, options: EngineOptions) -> Optional[Leases]:
    """The store's leases, or None when the options turn them off."""
    if not options.leases:
        return None
    settings = LeaseSettings.from_options(options)
    dialect = repository.engine.dialect.name
    if dialect not in SUPPORTED_DIALECTS:
        raise errors.ConfigurationError(
            f"leases are not supported on {dialect} (only on SQLite, "
            "PostgreSQL and MySQL/MariaDB): pass "
            "EngineOptions(leases=False) to use the store without them"
        )
    return Leases(repository, settings)


class Leases:
    """Refresh leases and grant claims of one store."""

    def __init__(self, repository: TokenRepository, settings: LeaseSettings):
        self.repository = repository
        self.settings = settings
        self._insert_claim = _claim_insert(repository.engine.dialect.name)
        # What each thread holds. The SDK looks a token up, calls Zoho and
        # saves in one thread: only a holder's save pays for ending a
        # claim, and a holder that looks again is not made to wait for
        # itself.
        self._held = _Held()

    def __repr__(self) -> str:
        return f"Leases(lease_ms={self.settings.lease_ms}, wait={self.settings.wait})"

    # -- what the store calls ---------------------------------------------

    def settle(
        self, probe: Optional[TokenRecord], found: Optional[TokenRecord]
    ) -> Optional[TokenRecord]:
        """What a lookup hands the SDK, once the workers have agreed.

        probe: what find_token was given (None for find_token_by_id).
        found: the row the lookup found, or None.
        """
        if probe is not None and probe.id:
            # The SDK's get_token looks tokens with an id up through
            # find_token_by_id; find_token gets one only from revoke(),
            # which calls Zoho with no refresh and saves nothing.
            return found
        try:
            if found is not None:
                return self._settle_found(probe, found)
            if probe is not None and _will_exchange_grant(probe):
                return self._settle_grant(probe)
        except errors.SqlStoreError as err:
            # The lookup itself succeeded: a database that refuses the
            # lease's writes (read-only, or gone since) leaves the SDK to
            # call Zoho on its own, as it would without leases.
            log.warning("find_token: going on without a lease: %s", err)
        return found

    def saved(self, record: TokenRecord) -> None:
        """After a save: end this thread's claim on its grant, if any."""
        held = self._held
        if record.id:
            held.leases.pop(record.id, None)
        if not held.claims or not record.grant_token:
            return
        grant = digest(record.grant_token)
        owner = held.claims.pop(grant, None)
        if owner is None:
            return
        parameters = {"grant": grant, "owner": owner}
        try:
            self.repository.run_rowcount("save_token", _DROP_OWN_CLAIM, parameters)
        except errors.SqlStoreError as err:
            # The token is saved, and the waiters look for the token
            # first; the claim only outlives it until it expires.
            log.warning("save_token: the grant claim was left to expire: %s", err)

    # -- refresh leases ---------------------------------------------------

    def _settle_found(self, probe, found: TokenRecord) -> TokenRecord:
        pause_ms = ms_until_refresh(found, probe)
        if pause_ms is None:
            return found
        if pause_ms:
            time.sleep(pause_ms / 1000)
        if self._take(found):
            log.debug("find_token: refreshing token %s under a lease", found.id)
            return found
        return self._wait_for_refresh(found)

    def _take(self, found: TokenRecord) -> bool:
        owner = str(uuid.uuid4())
        parameters = {
            "row_id": found.id,
            "owner": owner,
            "previous": self._held.leases.get(found.id),
            "lease_ms": self.settings.lease_ms,
        }
        if found.access_token:
            statement = _TAKE_SAME_ACCESS
            parameters["seen_access"] = digest(found.access_token)
        else:
            statement = _TAKE_NO_ACCESS
        taken = self.repository.run_rowcount("find_token", statement, parameters)
        if taken:
            self._held.leases[found.id] = owner
        return taken > 0

    def _wait_for_refresh(self, found: TokenRecord) -> Optional[TokenRecord]:
        for _ in _pauses(self.settings.wait):
            rows = self.repository.run_rows("find_token", _POLL_ROW, {"key": found.id})
            if not rows:
                return None  # deleted meanwhile: there is nothing to hand back
            current = self.repository.record_of(rows[0])
            if current.access_token != found.access_token:
                log.debug(
                    "find_token: token %s was refreshed by another worker", found.id
                )
                return current
            if _lease_is_open(rows[0]) and self._take(found):
                log.debug("find_token: took over the lease on token %s", found.id)
                return found
        log.warning(
            "find_token: waited %.1f s for another worker to refresh token %s; "
            "handing it back as it is, so this worker's SDK refreshes it too",
            self.settings.wait,
            found.id,
        )
        return found

    # -- grant claims -----------------------------------------------------

    def _settle_grant(self, probe: TokenRecord) -> Optional[TokenRecord]:
        grant = digest(probe.grant_token)
        if self._claim(grant):
            log.debug("find_token: exchanging a new grant token under a claim")
            return None
        return self._wait_for_exchange(probe, grant)

    def _claim(self, grant: str) -> bool:
        parameters = {
            "grant": grant,
            "owner": str(uuid.uuid4()),
            "previous": self._held.claims.get(grant),
            "lease_ms": self.settings.lease_ms,
        }
        run = self.repository.run_rowcount
        claimed = parameters["previous"] is not None and run(
            "find_token", _RENEW_OWN_CLAIM, parameters
        )
        if not claimed:
            # A claim whose holder died is dropped first; of the workers
            # that then insert at once, the primary key lets one in.
            run("find_token", _DROP_EXPIRED_CLAIMS, {})
            claimed = run("find_token", self._insert_claim, parameters)
        if claimed:
            self._held.claims[grant] = parameters["owner"]
        return claimed > 0

    def _wait_for_exchange(self, probe, grant: str) -> Optional[TokenRecord]:
        for _ in _pauses(self.settings.wait):
            found = self.repository.find(probe)
            if found is not None:
                log.debug("find_token: a grant token was exchanged by another worker")
                return found
            state = self.repository.run_rows(
                "find_token", _CLAIM_STATE, {"grant": grant}
            )
            if (not state or _lease_is_open(state[0])) and self._claim(grant):
                log.debug("find_token: took over the claim on a grant token")
                return None
        log.warning(
            "find_token: waited %.1f s for another worker to exchange a grant "
            "token; this worker's SDK exchanges it too",
            self.settings.wait,
        )
        return None


class _Held(threading.local):
    """One thread's leases (row id -> owner) and claims (digest -> owner)."""

    def __init__(self):
        self.leases = {}
        self.claims = {}


def quiet(found: Optional[TokenRecord]) -> bool:
    """True in the common case: a found token the SDK will not refresh now.

    The store asks this before anything else on every lookup, so it is the
    one check a lookup of a fresh token pays for.
    """
    if found is None or not found.access_token:
        return False
    expiry = found.expiry_time
    return expiry is None or expiry - time.time() * 1000 >= _QUIET_MS


def ms_until_refresh(
    found: TokenRecord, probe: Optional[TokenRecord] = None, now_ms=None
) -> Optional[int]:
    """How soon the SDK will refresh the token a lookup found.

    0: at once. A few milliseconds: it is that close to the SDK's margin.
    None: not now, or the SDK decides on values of the probe's own.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    expiry = found.expiry_time
    if found.access_token:
        if expiry is None or expiry - now_ms - SDK_REFRESH_MARGIN_MS >= EDGE_MS:
            return None  # the common case, first and cheapest
    elif not (found.refresh_token or found.grant_token):
        return None  # the SDK has nothing to exchange
    if probe is not None and _probe_decides(probe, found):
        return None
    if not found.access_token:
        return 0
    return max(0, expiry - now_ms - SDK_REFRESH_MARGIN_MS + 1)


def _probe_decides(probe: TokenRecord, found: TokenRecord) -> bool:
    # find_token fills only what the token lacks, and the SDK then decides
    # on the token it gave: its own access token or expiry wins the row's.
    own_access = probe.access_token and probe.access_token != found.access_token
    return bool(own_access) or probe.expiry_time is not None


def _will_exchange_grant(probe: TokenRecord) -> bool:
    # Found nothing, the SDK goes on with the token it gave: it exchanges
    # the grant only when it has neither an access nor a refresh token.
    return bool(probe.grant_token) and not (probe.access_token or probe.refresh_token)


def _lease_is_open(row) -> bool:
    return row.lease_until is None or row.lease_until <= row.database_now


def _pauses(wait: float) -> Iterator[None]:
    """Sleep before each poll, longer each time, until the wait is up."""
    give_up = time.monotonic() + wait
    pause = FIRST_PAUSE
    while True:
        left = give_up - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(random.uniform(pause / 2, pause), left))
        yield
        pause = min(pause * 2, LONGEST_PAUSE)


def _claim_insert(dialect: str):
    """INSERT of a claim that adds nothing, without an error, if one exists."""
    if dialect == "postgresql":
        return (
            postgresql.insert(claims).values(**_CLAIM_VALUES).on_conflict_do_nothing()
        )
    if dialect == "sqlite":
        return sqlite.insert(claims).values(**_CLAIM_VALUES).on_conflict_do_nothing()
    # MySQL and MariaDB: IGNORE also turns other errors into warnings, but
    # the values are a hex digest, a UUID and an integer, which always fit.
    return insert(claims).values(**_CLAIM_VALUES).prefix_with("IGNORE")
