"""Run the benchmarks: ``python -m benchmarks.run [--quick]``.

Fills every store to each size, times the six operations round-robin
across the stores, counts our store's round trips, profiles it, measures
its memory, and prints a Markdown report that it also writes to
``benchmarks/results/<date>.md`` (``<date>-quick.md`` for ``--quick``).
The exit status is 1 when our store or a floor failed or answered wrong,
never because of a timing: the numbers are measured, not asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import sys
import time
from typing import List

if __package__ in (None, ""):  # run as a file: python benchmarks/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks import (  # noqa: E402
    databases,
    environment,
    ladder,
    memory,
    profiling,
    report,
    roundtrips,
    settings,
    stage as stages,
    timing,
)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# Backends of our store, as the side measurements name them.
OURS = {"sqlite": "ours-sqlite", "postgresql": "ours-postgresql",
        "mariadb": "ours-mariadb"}


def parse(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few seconds (CI), not a measurement")
    parser.add_argument("--sizes", help="comma-separated N, e.g. 10,1000")
    parser.add_argument("--rounds", type=int, help="timed rounds per size")
    parser.add_argument("--output", help="where to write the Markdown report")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["trips", "profile", "memory"],
                        help="leave out a side measurement (repeatable)")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> settings.Plan:
    plan = settings.QUICK if args.quick else settings.FULL
    changes = {}
    if args.sizes:
        changes["sizes"] = tuple(int(n) for n in args.sizes.split(","))
    if args.rounds:
        changes["rounds"] = args.rounds
    if changes:
        plan = dataclasses.replace(plan, name=plan.name + " (adjusted)", **changes)
    return plan


def say(message: str) -> None:
    # Progress goes to stderr, so that stdout is the report alone.
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed_run(plan: settings.Plan, stage: stages.Stage) -> timing.Runner:
    runner = timing.Runner(plan)
    for size in plan.sizes:
        say(f"filling to N={size:,}")
        stage.fill_to(size, plan.caps)
        databases.analyze_servers(stage)
        subjects = [
            s for s in stage.subjects if size <= plan.caps.get(s.cap_key, size)
        ]
        say(f"timing N={size:,}: {len(subjects)} stores, {plan.rounds} rounds")
        runner.run_size(size, subjects)
    return runner


def backends_of(stage: stages.Stage) -> List[str]:
    keys = {s.key for s in stage.subjects}
    return [name for name, key in OURS.items() if key in keys]


def side_measurements(results: report.Results, args, stage) -> None:
    """Round trips, profile and memory: one backend at a time, after timing."""
    for backend in backends_of(stage):
        subject = stage.by_key(OURS[backend])
        if "trips" not in args.skip:
            say(f"counting round trips on {subject.backend}")
            results.trips[backend] = _guard(
                roundtrips.count, backend, stage, results.plan.trace_calls
            )
        if "profile" not in args.skip:
            say(f"profiling our store on {subject.backend}")
            profile(results, stage, subject)
    if "memory" not in args.skip:
        measure_memory(results, stage)


def measure_memory(results: report.Results, stage) -> None:
    plan = results.plan
    subjects = [stage.by_key(OURS[backend]) for backend in backends_of(stage)]
    names = ", ".join(subject.backend for subject in subjects)
    say(f"memory: {plan.memory_calls:,} find_token calls on {names}, at once")
    children = {
        subject.backend: memory.start(
            subject.url, subject.backend, plan.memory_calls, plan.memory_users
        )
        for subject in subjects
    }
    for backend, child in children.items():
        results.memory[backend] = memory.collect(child)


def profile(results: report.Results, stage, subject) -> None:
    calls = results.plan.profile_calls
    sqlite_file = os.path.join(stage.tempdir, "ours.db")
    results.plans[subject.key] = profiling.explain_all(subject, sqlite_file)
    results.profiles[subject.key] = profiling.profile_store(subject, calls)
    size = max(stage.filled.get(subject.key, 1), 1)
    results.ladders[subject.key] = _guard(
        lambda: ladder.Ladder(subject, size).run(calls)
    )


def _guard(measure, *args) -> dict:
    """A side measurement that fails is reported, not fatal."""
    try:
        return measure(*args)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {str(err).strip()[:300]}"}


def sdk_notes(results: report.Results) -> None:
    if any(key == "sdk-db" and op == "save_insert" and cell.failed
           for (_, op, key), cell in results.cells.items()):
        results.notes.append(
            "The SDK's DBStore numbers a new token `max(id) + 1` with `id` a "
            "VARCHAR, so the maximum is taken over text: '9999999' sorts "
            "above '10000000', the new id already exists, and the INSERT "
            "fails on the primary key. With the SDK's own numbering it fails "
            "from the eleventh token on ('9' > '10')."
        )


def our_problems(results: report.Results) -> List[str]:
    """Failed or wrong cells of our store or a floor: the run is broken."""
    found = []
    for (size, op, key), cell in results.cells.items():
        subject = results.stage.by_key(key)
        checked = subject.is_ours or subject.is_floor or subject.is_encrypted
        if checked and cell.status != "ok":
            found.append(f"{subject.store} on {subject.backend}, {op}, N={size}")
    return found


def write(text: str, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".tmp"
    with open(partial, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


def default_output(plan: settings.Plan) -> str:
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    suffix = "" if plan.name == "full" else "-quick"
    return os.path.join(RESULTS_DIR, f"{day}{suffix}.md")


def main(argv: List[str]) -> int:
    args = parse(argv)
    plan = plan_from(args)
    began = time.perf_counter()
    command = " ".join(["python -m benchmarks.run", *argv])
    stage = stages.build()
    try:
        results = report.Results(plan, stage, {})
        results.info = environment.describe(stage, command)
        runner = timed_run(plan, stage)
        results.cells = runner.cells
        side_measurements(results, args, stage)
        sdk_notes(results)
        results.footer.append(
            f"Whole run: {time.perf_counter() - began:.0f} s; load average at "
            f"the end (1, 5, 15 min): {environment.load_average()}."
        )
        text = report.render(results)
    finally:
        stage.close()
        shutil.rmtree(stage.tempdir, ignore_errors=True)
    print(text)
    output = args.output or default_output(plan)
    write(text, output)
    say(f"report written to {output}")
    broken = our_problems(results)
    if broken:
        say("our store or a floor failed or answered wrong: " + "; ".join(broken))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
