"""The tokens every store is filled with, made up the same way each run.

Token values look like Zoho's (``1000.`` and two 32-digit hex halves,
about 70 characters) and are derived from the user's index and a
generation number, so that every store holds the same users and a save
that "refreshes" a user rotates that user's access token everywhere alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from typing import Optional

CLIENT_ID = "1000.BENCHCLIENT0000000000000000000000"
CLIENT_SECRET = "bench0secret0000000000000000000000000000aa"
REDIRECT_URL = "https://bench.example.com/oauth/callback"
API_DOMAIN = "https://www.zohoapis.com"
ORG_ID = "60000000001"

# Users saved by "save (insert)" are numbered from here, far above any
# filled index, so they never collide with the rows of a later fill. The
# round-trip count, the profile and the memory measurement save users of
# their own from their bases, and so never disturb the timed users.
INSERT_BASE = 50_000_000
TRACE_BASE = 60_000_000
PROFILE_BASE = 70_000_000
MEMORY_BASE = 80_000_000

# The SDK's stores number ids themselves (max + 1). Filled rows count
# down from here, so the CSV store's new ids (max + 1) never collide with
# the rows a later, larger fill adds.
SDK_ID_TOP = 10_000_000

# Epoch milliseconds, a fixed moment: expiry times are data, not clocks.
EXPIRY_BASE = 1_900_000_000_000
FILLED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class TokenSpec:
    """What one user's stored token should hold at one generation."""

    index: int
    generation: int = 0

    @property
    def user_name(self) -> str:
        return f"user{self.index:08d}@bench.example.com:{ORG_ID}"

    @property
    def access_token(self) -> str:
        return _token("access", self.index, self.generation)

    @property
    def refresh_token(self) -> str:
        return _token("refresh", self.index, 0)

    @property
    def grant_token(self) -> str:
        return _token("grant", self.index, 0)

    @property
    def expiry(self) -> int:
        return EXPIRY_BASE + self.index * 1000 + self.generation

    @property
    def uuid_id(self) -> str:
        """The id of this user's row in sqlstore's and the floor's tables."""
        raw = hashlib.blake2b(f"id:{self.index}".encode(), digest_size=16)
        return str(uuid.UUID(bytes=raw.digest()))

    @property
    def sdk_id(self) -> str:
        """The id of this user's row in the SDK's stores."""
        if self.index >= SDK_ID_TOP:  # users the side measurements save
            return str(self.index)
        return str(SDK_ID_TOP - self.index)

    def next(self) -> "TokenSpec":
        return TokenSpec(self.index, self.generation + 1)


def _token(kind: str, index: int, generation: int) -> str:
    raw = hashlib.blake2b(
        f"{kind}:{index}:{generation}".encode(), digest_size=32
    ).hexdigest()
    return f"1000.{raw[:32]}.{raw[32:]}"


def sdk_row(spec: TokenSpec) -> list:
    """The ten values of the SDK's stores, in their column order."""
    return [
        spec.sdk_id,
        spec.user_name,
        CLIENT_ID,
        CLIENT_SECRET,
        spec.refresh_token,
        spec.access_token,
        None,
        str(spec.expiry),
        REDIRECT_URL,
        API_DOMAIN,
    ]


def inserted_spec(counter: int) -> TokenSpec:
    return TokenSpec(INSERT_BASE + counter)


def expected_id(spec: TokenSpec, sdk_ids: bool) -> Optional[str]:
    return spec.sdk_id if sdk_ids else spec.uuid_id
