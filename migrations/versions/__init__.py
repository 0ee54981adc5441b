"""The revisions of the token table, one file each, in Alembic's order."""
