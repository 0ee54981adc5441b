"""Round trips per call: what reaches the server, and what SQLAlchemy did.

A child process makes a few calls of each operation on each store of one
backend, between marker ``stat`` calls on paths that do not exist. Run
under strace, every ``sendto`` between two markers is one message to the
server (each is a round trip: these drivers wait for the answer before
sending again), and its first SQL word says what it was: BEGIN, SELECT,
ROLLBACK... On SQLite, which has no server, the sqlite3 trace callback
lists the statements instead, and strace counts the fsyncs of each save.

Without strace only the SQLAlchemy and pool events are counted.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List

from . import data, settings

MARK = "sqlstore-bench-mark:"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SYSCALLS = "sendto,sendmsg,fsync,fdatasync,newfstatat,stat,statx"
_LINE = re.compile(r'^(?:\d+\s+)?(\w+)\((.*)$')
_HEX = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


# -- the child ---------------------------------------------------------------


def _child_subjects(config: dict) -> List:
    from . import floors, subjects

    backend = config["backend"]
    if backend == "sqlite":
        return [
            subjects.OursSubject(config["sqlite_url"], "SQLite", "ours-sqlite"),
            floors.SqliteFloor(config["sqlite_floor"]),
        ]
    if backend == "postgresql":
        return [
            subjects.OursSubject(settings.PG_URL, "PostgreSQL", "ours-postgresql"),
            floors.PostgresFloor(),
        ]
    return [
        subjects.OursSubject(settings.MYSQL_URL, "MariaDB", "ours-mariadb"),
        floors.MysqlFloor(),
        subjects.SdkDbSubject(),
    ]


def _mark(directory: str, name: str) -> None:
    try:
        os.stat(os.path.join(directory, MARK + name))
    except FileNotFoundError:
        pass


def _run_calls(calls) -> int:
    failed = 0
    for call in calls:
        try:
            call()
        except Exception:  # the SDK's stores fail some saves; count them
            failed += 1
    return failed


def child(config: dict) -> dict:
    from .counters import Counters
    from .sidework import OwnUsers

    counters = Counters()
    counters.install()
    stores = _child_subjects(config)
    for store in stores:
        if hasattr(store, "connection") and store.backend == "SQLite":
            counters.watch_sqlite(store.connection)
    users = OwnUsers(data.TRACE_BASE, max(config["calls"], 10))
    results = {}
    for store in stores:
        users.seed(store)
        for operation in settings.OPERATIONS:
            # Untimed, uncounted calls first: connections open, caches fill.
            _run_calls(users.prepared(store, operation, 2))
            calls = users.prepared(store, operation, config["calls"])
            phase = f"{store.key}:{operation}"
            _mark(config["marker_dir"], phase + ":begin")
            counters.active = True
            failed = _run_calls(calls)
            counters.active = False
            _mark(config["marker_dir"], phase + ":end")
            results[phase] = {"events": counters.take(), "failed": failed}
        store.close()
    return results


# -- reading strace's output ---------------------------------------------------


def _strings(arguments: str) -> List[bytes]:
    return [bytes.fromhex(s.replace("\\x", "")) for s in _HEX.findall(arguments)]


def _label(payload: bytes, backend: str) -> str:
    """What one message to the server was, by its first SQL word."""
    if backend == "postgresql":
        if payload[:1] == b"Q":
            return _word(payload[5:])
        return "protocol"
    if len(payload) > 4 and payload[4] == 3:  # MySQL's COM_QUERY
        return _word(payload[5:])
    if len(payload) > 4 and payload[4] == 1:
        return "QUIT"
    return "handshake"


def _word(sql: bytes) -> str:
    match = re.search(rb"[A-Za-z]+", sql)
    return match.group(0).decode().upper() if match else "?"


def parse_trace(path: str, backend: str) -> Dict[str, dict]:
    """Per phase: messages sent (with their labels) and fsyncs."""
    phases: Dict[str, dict] = {}
    current = None
    with open(path, errors="replace") as handle:
        for line in handle:
            match = _LINE.match(line)
            if not match:
                continue
            name, arguments = match.groups()
            if name in ("newfstatat", "stat", "statx"):
                current = _marker(arguments, current)
                continue
            if current is None:
                continue
            phase = phases.setdefault(
                current, {"sends": collections.Counter(), "fsyncs": 0}
            )
            if name in ("fsync", "fdatasync"):
                phase["fsyncs"] += 1
            elif arguments.startswith(tuple("0123456789")):
                strings = _strings(arguments)
                payload = strings[0] if strings else b""
                phase["sends"][_label(payload, backend)] += 1
    return phases


def _marker(arguments: str, current):
    for text in _strings(arguments):
        decoded = text.decode("utf-8", "replace")
        if MARK in decoded:
            name = decoded.split(MARK, 1)[1]
            phase, _, edge = name.rpartition(":")
            return phase if edge == "begin" else None
    return current


# -- the parent ----------------------------------------------------------------


def count(backend: str, stage, calls: int) -> dict:
    """Round trips and events per call, for each store of one backend."""
    workdir = tempfile.mkdtemp(prefix="sqlstore-bench-trace-")
    try:
        config = {
            "backend": backend,
            "calls": calls,
            "marker_dir": workdir,
            "sqlite_url": stage.sqlite_url,
            "sqlite_floor": os.path.join(stage.tempdir, "floor.db"),
            "output": os.path.join(workdir, "result.json"),
        }
        config_path = os.path.join(workdir, "config.json")
        with open(config_path, "w") as handle:
            json.dump(config, handle)
        trace = os.path.join(workdir, "strace.txt")
        command = [sys.executable, "-m", "benchmarks.roundtrips", config_path]
        strace = shutil.which("strace")
        if strace:
            command = [strace, "-f", "-qq", "-xx", "-s", "80", "-o", trace,
                       "-e", f"trace={_SYSCALLS}"] + command
        subprocess.run(command, cwd=ROOT, check=True, timeout=600)
        with open(config["output"]) as handle:
            events = json.load(handle)
        wire = parse_trace(trace, backend) if strace else {}
        return {"calls": calls, "events": events, "wire": wire,
                "strace": bool(strace)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: List[str]) -> None:
    with open(argv[0]) as handle:
        config = json.load(handle)
    results = child(config)
    with open(config["output"], "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
