"""Memory of a long-lived process: RSS across many find_token calls.

A child process, so that nothing the benchmark itself holds is counted:
it makes our store, saves users of its own, and then makes
the calls, building each probe token as the SDK would. RSS is read from
/proc at the start, after the first 1% of the calls (pools open, caches
filled) and at ten points up to the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import List

from . import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_KINDS = ("find_user", "find_access", "find_refresh")


def rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def child(url: str, backend: str, calls: int, users_count: int) -> dict:
    from .sidework import OwnUsers
    from .subjects import OursSubject

    subject = OursSubject(url, backend, f"memory-{backend}")
    users = OwnUsers(data.MEMORY_BASE, users_count)
    users.seed(subject)
    start = rss_kib()
    warm_at = max(1, calls // 100)
    marks = {max(1, calls * step // 10) for step in range(1, 11)}
    points, wrong, warm = [], 0, start
    began = time.perf_counter()
    for number in range(1, calls + 1):
        operation = _KINDS[number % len(_KINDS)]
        spec = users.spec(subject, operation, number)
        call, check = subject.prepare(operation, spec)
        if check(call()) is not None:
            wrong += 1
        if number == warm_at:
            warm = rss_kib()
        if number in marks:
            points.append((number, rss_kib()))
    subject.close()
    return {
        "calls": calls,
        "seconds": time.perf_counter() - began,
        "start_kib": start,
        "warm_kib": warm,
        "end_kib": points[-1][1],
        "points": points,
        "wrong": wrong,
        "users": users_count,
    }


def start(url: str, backend: str, calls: int, users: int) -> subprocess.Popen:
    """Start the child for one backend; ``collect`` reads what it measured.

    The children of all backends run at once: memory does not depend on
    how busy the machine is, and the run is shorter for it.
    """
    command = [sys.executable, "-m", "benchmarks.memory", url, backend,
               str(calls), str(users)]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def collect(child_process: subprocess.Popen, timeout: float = 900) -> dict:
    try:
        out, err = child_process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child_process.kill()
        child_process.communicate()
        return {"error": f"no answer within {timeout:.0f} s"}
    if child_process.returncode != 0:
        last = (err.strip().splitlines() or ["no message"])[-1]
        return {"error": f"exit {child_process.returncode}: {last[:300]}"}
    return json.loads(out.strip().splitlines()[-1])


def main(argv: List[str]) -> None:
    url, backend, calls, users = argv[0], argv[1], int(argv[2]), int(argv[3])
    print(json.dumps(child(url, backend, calls, users)))


if __name__ == "__main__":
    main(sys.argv[1:])
