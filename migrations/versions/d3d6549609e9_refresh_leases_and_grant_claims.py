"""Refresh leases on oauthtoken, and the oauthtoken_claim table.

Revision ID: d3d6549609e9
Revises: 26072f260166
Create Date: 2026-12-04 18:05:00.000000

Workers agree through these who refreshes an expiring access token
(lease_owner, lease_until on the token's row) and who exchanges a grant
token nobody has exchanged yet (a row of oauthtoken_claim). Both columns
are nullable and empty on existing rows: the upgrade rewrites nothing.
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "d3d6549609e9"
down_revision: Union[str, Sequence[str], None] = "26072f260166"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLE = "oauthtoken"
CLAIMS = "oauthtoken_claim"


def upgrade() -> None:
    # MySQL commits each DDL statement at once, and the new revision number
    # only after the last: a run cut short in between leaves these columns
    # and this table in place under the old number. Each step is skipped
    # when already done, so that the next run finishes the job.
    if op.get_context().as_sql:  # SQL written out (--sql): nothing to look at
        columns, claims_exist = set(), False
    else:
        present = sa.inspect(op.get_bind())
        columns = {column["name"] for column in present.get_columns(TABLE)}
        claims_exist = present.has_table(CLAIMS)
    # Batch mode, for SQLite: it adds columns in place, but before 3.35
    # cannot drop one, and then Alembic copies the table instead.
    with op.batch_alter_table(TABLE) as batch:
        if "lease_owner" not in columns:
            batch.add_column(sa.Column("lease_owner", sa.String(length=36)))
        if "lease_until" not in columns:
            batch.add_column(sa.Column("lease_until", sa.BigInteger()))
    if claims_exist:
        return
    op.create_table(
        CLAIMS,
        sa.Column("grant_token_digest", sa.String(length=64), nullable=False),
        sa.Column("lease_owner", sa.String(length=36), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grant_token_digest", name=op.f("pk_oauthtoken_claim")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table(CLAIMS)
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
