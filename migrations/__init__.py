"""Alembic migration scripts of the sqlstore token table.

This directory is the Alembic environment of a checkout (``alembic.ini``
points here) and is installed as ``sqlstore.migrations``, where
``sqlstore.migrate`` finds it after a plain ``pip install``.
"""
