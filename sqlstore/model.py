"""The ``oauthtoken`` table: one row per user, client app and data centre.

Alembic owns the schema in every database; this module is the model it is
checked against (``alembic check`` finds nothing to generate).

Token values are looked up through SHA-256 digests of them rather than the
values themselves: a digest has a fixed length that MySQL can index whatever
the token's length, and it keeps working once the values are encrypted.
Tokens are long random strings, so their plain digests reveal nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import BigInteger, Index, MetaData, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import ExactString, UtcDateTime, utc_now

TABLE_NAME = "oauthtoken"
CLAIM_TABLE_NAME = "oauthtoken_claim"

# Lengths in characters. Zoho's tokens are about 70 characters and client
# secrets about 42; the room to spare covers other formats and ciphertext.
ID_LENGTH = 255
USER_NAME_LENGTH = 320  # an e-mail address (254), a colon and an org id
CLIENT_ID_LENGTH = 200
API_DOMAIN_LENGTH = 200
SECRET_LENGTH = 2048
URL_LENGTH = 2048
DIGEST_LENGTH = 64  # SHA-256 in hex
LEASE_OWNER_LENGTH = 36  # a UUID in its usual text form

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class OAuthTokenRow(Base):
    """One stored authorization.

    ``client_id`` and ``api_domain`` hold ``''`` rather than NULL when
    unknown: SQL treats NULLs as distinct, so a unique constraint over a
    NULL column would let two workers store the same user twice.
    ``user_name`` stays NULL until the SDK has asked Zoho who the user is;
    such rows are told apart by their refresh token.
    """

    __tablename__ = TABLE_NAME

    id: Mapped[str] = mapped_column(ExactString(ID_LENGTH), primary_key=True)
    user_name: Mapped[Optional[str]] = mapped_column(
        ExactString(USER_NAME_LENGTH)
    )
    client_id: Mapped[str] = mapped_column(
        ExactString(CLIENT_ID_LENGTH), default="", server_default=""
    )
    api_domain: Mapped[str] = mapped_column(
        ExactString(API_DOMAIN_LENGTH), default="", server_default=""
    )
    client_secret: Mapped[Optional[str]] = mapped_column(String(SECRET_LENGTH))
    redirect_url: Mapped[Optional[str]] = mapped_column(String(URL_LENGTH))

    access_token: Mapped[Optional[str]] = mapped_column(String(SECRET_LENGTH))
    refresh_token: Mapped[Optional[str]] = mapped_column(String(SECRET_LENGTH))
    grant_token: Mapped[Optional[str]] = mapped_column(String(SECRET_LENGTH))
    access_token_digest: Mapped[Optional[str]] = mapped_column(
        String(DIGEST_LENGTH)
    )
    refresh_token_digest: Mapped[Optional[str]] = mapped_column(
        String(DIGEST_LENGTH)
    )
    grant_token_digest: Mapped[Optional[str]] = mapped_column(
        String(DIGEST_LENGTH)
    )

    # Epoch milliseconds at which the access token expires, as Zoho's SDK
    # counts them; the SDK's string form is converted at the adapter.
    expiry_time: Mapped[Optional[int]] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime(), default=utc_now
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime(), default=utc_now, onupdate=utc_now
    )

    # Who is refreshing this row's access token, and until when (epoch
    # milliseconds on the database's clock); NULL when nobody is. See
    # sqlstore.lease.
    lease_owner: Mapped[Optional[str]] = mapped_column(String(LEASE_OWNER_LENGTH))
    lease_until: Mapped[Optional[int]] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("user_name", "client_id", "api_domain"),
        UniqueConstraint("refresh_token_digest"),
        Index(None, "access_token_digest"),
        Index(None, "grant_token_digest"),
        Index(None, "updated_at"),
        {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},
    )


oauthtoken = OAuthTokenRow.__table__


class GrantClaimRow(Base):
    """A grant token being exchanged by one worker: see sqlstore.lease.

    Only in-flight exchanges have a row, and no lookup of tokens reads this
    table: a claim is never mistaken for a token. The primary key is what
    makes one claimant win when many insert at once.
    """

    __tablename__ = CLAIM_TABLE_NAME

    grant_token_digest: Mapped[str] = mapped_column(
        String(DIGEST_LENGTH), primary_key=True
    )
    lease_owner: Mapped[str] = mapped_column(String(LEASE_OWNER_LENGTH))
    # Epoch milliseconds on the database's clock.
    lease_until: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = ({"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},)


oauthtoken_claim = GrantClaimRow.__table__
