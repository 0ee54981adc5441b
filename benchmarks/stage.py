"""Setting the stage: reachable backends, fresh tables, the subjects.

A server that does not answer is left out with the reason, unless
``SQLSTORE_REQUIRE_BACKENDS=1`` (as CI sets it for the tests), which makes
it an error: then no backend can silently drop out of a run.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Dict, List

from sqlstore import migrate

from . import databases, floors, settings, subjects


class BackendMissing(RuntimeError):
    """A server the run requires does not answer."""


@dataclasses.dataclass
class Stage:
    tempdir: str
    subjects: List[subjects.Subject]
    missing: Dict[str, str]  # backend -> why it was left out
    filled: Dict[str, int] = dataclasses.field(default_factory=dict)
    fill_seconds: Dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def sqlite_url(self) -> str:
        return f"sqlite:///{os.path.join(self.tempdir, 'ours.db')}"

    def by_key(self, key: str) -> subjects.Subject:
        return next(s for s in self.subjects if s.key == key)

    def fill_to(self, size: int, caps: Dict[str, int]) -> None:
        """Add rows to every store that is not capped below this size."""
        from .data import TokenSpec

        for subject in self.subjects:
            if size > caps.get(subject.cap_key, size):
                continue
            have = self.filled.get(subject.key, 0)
            if have >= size:
                continue
            began = time.perf_counter()
            subject.fill([TokenSpec(i) for i in range(have, size)])
            self.filled[subject.key] = size
            spent = time.perf_counter() - began
            self.fill_seconds[subject.key] = (
                self.fill_seconds.get(subject.key, 0.0) + spent
            )

    def close(self) -> None:
        for subject in self.subjects:
            try:
                subject.close()
            except Exception:  # closing is best effort at the end of a run
                pass


def build() -> Stage:
    """Fresh tables on every reachable backend, and a subject per store."""
    tempdir = tempfile.mkdtemp(prefix="sqlstore-bench-")
    missing: Dict[str, str] = {}
    made: List[subjects.Subject] = []
    made += _sqlite_subjects(tempdir)
    made += _server_subjects(missing)
    made.append(subjects.SdkFileSubject(os.path.join(tempdir, "sdk_tokens.csv")))
    if missing and os.environ.get("SQLSTORE_REQUIRE_BACKENDS") == "1":
        raise BackendMissing("; ".join(f"{k}: {v}" for k, v in missing.items()))
    return Stage(tempdir=tempdir, subjects=made, missing=missing)


def _sqlite_subjects(tempdir: str) -> List[subjects.Subject]:
    ours_url = f"sqlite:///{os.path.join(tempdir, 'ours.db')}"
    encrypted_url = f"sqlite:///{os.path.join(tempdir, 'ours-encrypted.db')}"
    floor_path = os.path.join(tempdir, "floor.db")
    databases.create_sqlite_files(ours_url, f"sqlite:///{floor_path}")
    migrate.upgrade(encrypted_url)
    return [
        subjects.OursSubject(ours_url, "SQLite", "ours-sqlite"),
        subjects.OursEncryptedSubject(encrypted_url, "SQLite", "ours-sqlite"),
        floors.SqliteFloor(floor_path),
    ]


def _server_subjects(missing: Dict[str, str]) -> List[subjects.Subject]:
    try:
        databases.ensure_databases()
    except Exception as err:
        # Which server failed shows in the message; both are left out.
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
        missing["PostgreSQL and MariaDB"] = reason
        return []
    made: List[subjects.Subject] = []
    databases.reset_server_tables(settings.PG_URL)
    made.append(subjects.OursSubject(settings.PG_URL, "PostgreSQL", "ours-postgresql"))
    databases.reset_our_table(settings.PG_ENCRYPTED_URL)
    made.append(subjects.OursEncryptedSubject(
        settings.PG_ENCRYPTED_URL, "PostgreSQL", "ours-postgresql"
    ))
    made.append(floors.PostgresFloor())
    databases.reset_server_tables(settings.MYSQL_URL)
    made.append(subjects.OursSubject(settings.MYSQL_URL, "MariaDB", "ours-mariadb"))
    databases.reset_our_table(settings.MYSQL_ENCRYPTED_URL)
    made.append(subjects.OursEncryptedSubject(
        settings.MYSQL_ENCRYPTED_URL, "MariaDB", "ours-mariadb"
    ))
    made.append(floors.MysqlFloor())
    made.append(subjects.SdkDbSubject())
    return made
