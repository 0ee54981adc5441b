"""What the results were measured on: machine, versions, settings."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import sqlite3
import subprocess
import sys
from typing import Dict

from . import databases, stage as stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> str:
    try:
        with open("/proc/meminfo") as handle:
            kib = int(handle.readline().split()[1])
        return f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown memory"


def load_average() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def git_state() -> str:
    """The commit measured, and whether sqlstore/ had changes on top."""
    def git(*args):
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "sqlstore", "migrations")
    return commit + (" with uncommitted changes to sqlstore/" if dirty else "")


def drivers() -> str:
    import psycopg2

    libpq = psycopg2.extensions.libpq_version()
    try:
        import mysql.connector

        cext = "C extension" if getattr(mysql.connector, "HAVE_CEXT", False) else (
            "pure Python"
        )
    except ImportError:
        cext = "not importable"
    return (
        f"psycopg2 {_version('psycopg2-binary')} (libpq {libpq // 10000}."
        f"{libpq % 10000}), PyMySQL {_version('PyMySQL')}, "
        f"sqlite3 (SQLite {sqlite3.sqlite_version}), cryptography "
        f"{_version('cryptography')} (our store with a key); for the SDK's DBStore "
        f"mysql-connector-python {_version('mysql-connector-python')} ({cext})"
    )


def server_settings(stage: "stages.Stage") -> Dict[str, str]:
    found = {}
    if not any(s.backend == "PostgreSQL" for s in stage.subjects):
        return found
    conn = databases.pg_connect()
    try:
        with conn.cursor() as cursor:
            values = []
            for name in (
                "server_version", "fsync", "synchronous_commit", "shared_buffers"
            ):
                cursor.execute(f"SHOW {name}")
                values.append(cursor.fetchone()[0])
        found["PostgreSQL"] = (
            f"PostgreSQL {values[0]} (fsync {values[1]}, "
            f"synchronous_commit {values[2]}, shared_buffers {values[3]})"
        )
    finally:
        conn.close()
    conn = databases.mysql_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT VERSION(), @@innodb_flush_log_at_trx_commit, @@log_bin, "
                "@@innodb_buffer_pool_size"
            )
            version, flush, log_bin, pool = cursor.fetchone()
        found["MariaDB"] = (
            f"MariaDB {version} (innodb_flush_log_at_trx_commit={flush}, "
            f"binary log {'on' if log_bin else 'off'}, "
            f"innodb_buffer_pool_size {int(pool) // 2**20} MiB)"
        )
    finally:
        conn.close()
    return found


def sqlite_settings(stage: "stages.Stage") -> str:
    """journal_mode and synchronous as our store's own connections have them."""
    from sqlalchemy import text

    ours = stage.by_key("ours-sqlite").token_store.engine
    with ours.connect() as conn:
        mode = conn.execute(text("PRAGMA journal_mode")).scalar()
        sync = conn.execute(text("PRAGMA synchronous")).scalar()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return (
        f"SQLite {sqlite3.sqlite_version} (ours: journal_mode={mode}, "
        f"synchronous={names.get(sync, sync)}; floor: WAL, synchronous=FULL)"
    )


def describe(stage: "stages.Stage", command: str) -> Dict[str, str]:
    """The header of a results file, in the order it is shown."""
    info = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"`{command}`",
        "machine": (
            f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib()}, "
            f"{platform.system()} {platform.release()}"
        ),
        "load average at start (1, 5, 15 min)": load_average(),
        "Python": platform.python_version() + f" ({sys.executable})",
        "SQLAlchemy": _version("SQLAlchemy"),
        "drivers": drivers(),
        "Zoho SDK": f"zohocrmsdk8-0 {_version('zohocrmsdk8-0')}",
        "sqlstore": f"{_version('sqlstore')} at {git_state()}",
    }
    databases_found = server_settings(stage)
    databases_found["SQLite"] = sqlite_settings(stage)
    info["databases"] = "; ".join(databases_found.values())
    return info
