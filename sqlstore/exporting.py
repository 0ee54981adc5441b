"""Exporting the token table as the CSV file of the SDK's FileStore.

The file holds every token and client secret in plain text. It is written
to a new file in the target's directory, which ``tempfile.mkstemp``
creates readable and writable by its owner only (mode 0600, whatever the
umask), and only moved to its name once it is complete: no other user can
read it at any moment, and no reader ever sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from typing import List

from sqlalchemy.engine import Engine

from . import core
from .errors import SqlStoreError
from .record import TokenRecord
from .sdkformats import CSV_HEADER, csv_line


class ExportError(SqlStoreError):
    """The export file cannot be written where it was asked for."""


def export_csv(
    engine: Engine, path: str, *, sdk_ids: bool = False, overwrite: bool = False
) -> int:
    """Write every stored token to ``path``; returns how many.

    sdk_ids: number the rows 1, 2, 3... as the SDK's FileStore does, which
        it needs to add tokens of its own to the file later (it takes the
        largest id as a number). By default the rows keep their ids, so
        that importing the file again gives back the same rows.
    overwrite: replace an existing file instead of refusing to.
    """
    _check_target(path, overwrite)
    with engine.connect() as conn:
        stored = core.read_records(conn)
    _write_atomically(path, _lines(stored, sdk_ids), overwrite)
    return len(stored)


def _check_target(path: str, overwrite: bool) -> None:
    if path == "-":
        raise ExportError(
            "export writes a file, not standard output: give it a file name"
        )
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise ExportError(f"{path} exists; pass --force to replace it")
    if os.path.islink(path) or not os.path.isfile(path):
        # --force replaces a file of tokens, never a device, a pipe, a
        # directory or what a symbolic link points at.
        raise ExportError(
            f"{path} is not a regular file; --force replaces only a regular file"
        )


def _lines(stored: List[TokenRecord], sdk_ids: bool) -> List[List[str]]:
    lines = [list(CSV_HEADER)]
    for number, record in enumerate(stored, start=1):
        lines.append(csv_line(record, str(number) if sdk_ids else None))
    return lines


def _write_atomically(path: str, lines: List[List[str]], overwrite: bool) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        handle, temporary = tempfile.mkstemp(
            dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
        )
    except OSError as err:
        raise ExportError(f"cannot write in {folder}: {err.strerror}") from err
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as file:
            csv.writer(file).writerows(lines)
            file.flush()
            os.fsync(file.fileno())
        _move_into_place(temporary, path, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(folder)


def _move_into_place(temporary: str, path: str, overwrite: bool) -> None:
    try:
        if overwrite:
            os.replace(temporary, path)
            return
        # A link fails if the name was taken meanwhile; a rename would not.
        os.link(temporary, path)
    except FileExistsError:
        raise ExportError(f"{path} exists; pass --force to replace it") from None
    except OSError as err:
        raise ExportError(f"cannot write {path}: {err.strerror}") from err
    os.unlink(temporary)


def _sync_folder(folder: str) -> None:
    # The new name is only durable once the directory entry is on disk.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
