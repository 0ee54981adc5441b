"""The results as Markdown: header, targets, tables, round trips, profile."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from . import settings
from .settings import FIND_OPERATIONS, OPERATION_TITLES, OPERATIONS, Plan
from .timing import Cell

FLOOR_OF = {
    "SQLite": "floor-sqlite",
    "PostgreSQL": "floor-postgresql",
    "MariaDB": "floor-mariadb",
    # The CSV file has no floor of its own: it is set against the SQLite
    # floor, the other store that keeps tokens in a local file.
    "CSV file": "floor-sqlite",
}
FIND_TARGET = {"SQLite": 3.0, "PostgreSQL": 1.5, "MariaDB": 1.5}
SAVE_TARGET = 1.5
FLAT_TARGET = 1.3
MEMORY_TARGET_KIB = 1024
BACKEND_KEYS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def us(value: float) -> str:
    """Microseconds as shown: µs below 10 ms, then ms, then s."""
    if value >= 1e6:
        return f"{value / 1e6:.2f} s"
    if value >= 1e4:
        return f"{value / 1e3:.1f} ms"
    return f"{value:.0f} µs"


def _per_call(count: float, calls: int) -> str:
    value = count / calls
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


class Results:
    """What the report is made from."""

    def __init__(self, plan: Plan, stage, cells: Dict[Tuple[int, str, str], Cell]):
        self.plan = plan
        self.stage = stage
        self.cells = cells
        self.subjects = stage.subjects
        self.info: Dict[str, str] = {}
        self.trips: Dict[str, dict] = {}
        self.profiles: Dict[str, dict] = {}
        self.plans: Dict[str, list] = {}
        self.memory: Dict[str, dict] = {}
        self.ladders: Dict[str, dict] = {}
        self.notes: List[str] = []  # shown under the failed calls
        self.footer: List[str] = []  # shown at the end

    def sizes_of(self, key: str) -> List[int]:
        return [s for s in self.plan.sizes if (s, OPERATIONS[0], key) in self.cells]

    def median(self, size: int, operation: str, key: str) -> Optional[float]:
        cell = self.cells.get((size, operation, key))
        stats = cell.stats() if cell else None
        return stats[0] if stats else None

    def ratio(self, size: int, operation: str, subject) -> Optional[float]:
        mine = self.median(size, operation, subject.key)
        floor = self.median(size, operation, FLOOR_OF[subject.backend])
        if mine is None or not floor:
            return None
        return mine / floor

    def ours(self):
        return [s for s in self.subjects if s.is_ours]


# -- the document --------------------------------------------------------------


def render(results: Results) -> str:
    parts = [
        _header(results),
        _reading(results),
        _targets(results),
        *(_size_table(results, size) for size in results.plan.sizes),
        _encryption_cost(results),
        _problems(results),
        _limits(results),
        _round_trips(results),
        _where_time_goes(results),
        _query_plans(results),
        _memory(results),
        _fills(results),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _header(results: Results) -> str:
    title = f"# sqlstore benchmarks: {results.info.get('date', '')}"
    if results.plan.name != "full":
        title += f" ({results.plan.name} run: a smoke test, not a measurement)"
    rows = [[name, value] for name, value in results.info.items()]
    return title + "\n\n" + _table(["", ""], rows)


def _reading(results: Results) -> str:
    plan = results.plan
    caps = ", ".join(
        f"{key} to N ≤ {value:,}" for key, value in sorted(plan.caps.items())
    )
    return "\n".join([
        "## How this was measured",
        "",
        f"- Sizes N: {', '.join(f'{n:,}' for n in plan.sizes)} tokens per store, "
        "filled by bulk insert (the CSV file by writing it) with the rows the "
        "store itself would write; the servers' tables are ANALYZEd after "
        "each fill, SQLite's are not (sqlstore never runs ANALYZE).",
        f"- At each N, {plan.rounds} timed rounds after {plan.warmup} "
        "untimed ones. A round makes one call of each operation on every "
        "store in turn, the same user for all, the order of the stores "
        "rotating each round. Only the store's call is timed "
        "(`perf_counter_ns`); building the SDK's probe token and checking "
        "the answer are not.",
        f"- Time budget: a store that has spent {plan.budget:g} s on one "
        f"operation at one N (with at least {plan.min_samples} calls) sits out "
        "the rest of those rounds; its cell then shows n, its sample count. "
        f"Size caps: {caps or 'none'}.",
        "- Every answer is checked: a find must return the user's current "
        "token with its id, a save must be readable afterwards. A call that "
        "raises is **failed**, a wrong answer is **wrong**; neither stops "
        "the run.",
        "- Being called between seven other stores makes every call slower "
        "than in a tight loop (CPU caches and idle server connections go "
        "cold), and slows code-heavy stores most; the ratios here are for "
        "that setting. *Where our store's time goes* below uses tight loops.",
        "- Each cell: median / p95, then the ratio of the median to the "
        "raw-driver floor of the same backend at the same N (the CSV store "
        "against the SQLite floor).",
        "- The floor: one connection kept open in autocommit; a find is one "
        "indexed SELECT; a save is one committed single-row upsert "
        "(INSERT … ON CONFLICT / ON DUPLICATE KEY UPDATE) on a copy of our "
        "table with the same keys and indexes.",
    ])


# -- targets -------------------------------------------------------------------


def _worst(results: Results, subject, operations) -> Optional[Tuple[float, str]]:
    worst = None
    for size in results.sizes_of(subject.key):
        for operation in operations:
            ratio = results.ratio(size, operation, subject)
            if ratio is not None and (worst is None or ratio > worst[0]):
                where = f"{OPERATION_TITLES[operation]}, N={size:,}"
                worst = (ratio, where)
    return worst


def _flatness(results: Results, subject) -> Optional[Tuple[float, str]]:
    """The largest growth of a median from the smallest N to the largest.

    The floor's growth over the same sizes is shown with it: the sizes are
    timed minutes apart, so a machine that got busier in between moves the
    floor too.
    """
    sizes = results.sizes_of(subject.key)
    if len(sizes) < 2:
        return None
    worst = None
    floor = FLOOR_OF[subject.backend]
    for operation in OPERATIONS:
        low = results.median(sizes[0], operation, subject.key)
        high = results.median(sizes[-1], operation, subject.key)
        if low and high and (worst is None or high / low > worst[0]):
            worst = (high / low, operation)
    if worst is None:
        return None
    ratio, operation = worst
    where = f"{OPERATION_TITLES[operation]}, N={sizes[-1]:,} against N={sizes[0]:,}"
    floor_low = results.median(sizes[0], operation, floor)
    floor_high = results.median(sizes[-1], operation, floor)
    if floor_low and floor_high:
        where += f"; the floor's own growth there: {floor_high / floor_low:.2f}×"
    return ratio, where


def _verdict(value: Optional[float], limit: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value <= limit else "**missed**"


def _target_rows(results: Results, subject) -> List[List[str]]:
    rows = []
    limit = FIND_TARGET.get(subject.backend, 1.5)
    for label, operations, bound in (
        (f"find median ≤ {limit:g}× floor", FIND_OPERATIONS, limit),
        (f"save median ≤ {SAVE_TARGET:g}× floor upsert", settings.SAVE_OPERATIONS,
         SAVE_TARGET),
    ):
        worst = _worst(results, subject, operations)
        shown = f"worst {worst[0]:.2f}× ({worst[1]})" if worst else "-"
        rows.append([subject.backend, label, shown,
                     _verdict(worst and worst[0], bound)])
    flat = _flatness(results, subject)
    rows.append([
        subject.backend,
        f"flat in N: largest-N median ≤ {FLAT_TARGET:g}× smallest-N",
        f"worst {flat[0]:.2f}× ({flat[1]})" if flat else "-",
        _verdict(flat and flat[0], FLAT_TARGET),
    ])
    relative = _relative_flatness(results, subject)
    rows.append([
        subject.backend,
        f"flat in N against the floor: growth ÷ floor's growth ≤ {FLAT_TARGET:g}",
        f"worst {relative[0]:.2f}× ({relative[1]})" if relative else "-",
        _verdict(relative and relative[0], FLAT_TARGET),
    ])
    rows.append(_memory_target(results, subject.backend))
    return rows


def _relative_flatness(results: Results, subject) -> Optional[Tuple[float, str]]:
    """Growth from the smallest N to the largest, over the floor's growth.

    The sizes are timed minutes apart; dividing by the floor's growth
    takes out what the machine's load did in between.
    """
    sizes = results.sizes_of(subject.key)
    if len(sizes) < 2:
        return None
    worst = None
    for operation in OPERATIONS:
        low = results.ratio(sizes[0], operation, subject)
        high = results.ratio(sizes[-1], operation, subject)
        if low and high and (worst is None or high / low > worst[0]):
            worst = (high / low, OPERATION_TITLES[operation])
    if worst is None:
        return None
    return worst[0], f"{worst[1]}, N={sizes[-1]:,} against N={sizes[0]:,}"


def _memory_target(results: Results, backend: str) -> List[str]:
    found = results.memory.get(backend)
    label = f"memory: RSS growth after warm-up ≤ {MEMORY_TARGET_KIB} KiB"
    if not found or "error" in found:
        return [backend, label, found.get("error", "-") if found else "-",
                "not measured"]
    growth = found["end_kib"] - found["warm_kib"]
    verdict = "met" if growth <= MEMORY_TARGET_KIB else "**missed**"
    return [backend, label,
            f"{growth:+,} KiB over {found['calls']:,} find_token calls", verdict]


def _targets(results: Results) -> str:
    rows = []
    for subject in results.ours():
        rows += _target_rows(results, subject)
    return "## Targets (measured, not asserted)\n\n" + _table(
        ["backend", "target", "measured", "verdict"], rows
    )


# -- the timing tables ---------------------------------------------------------


def _cell_text(results: Results, size: int, operation: str, subject) -> str:
    cell = results.cells.get((size, operation, subject.key))
    if cell is None:
        return "-"
    stats = cell.stats()
    if stats is None:
        return f"**failed** {cell.failed}/{cell.calls}" if cell.failed else "-"
    text = f"{us(stats[0])} / {us(stats[1])}"
    ratio = results.ratio(size, operation, subject)
    if ratio is not None and not subject.is_floor:
        text += f" ({ratio:.2f}×)"
    if cell.failed:
        text += f" **failed** {cell.failed}/{cell.calls}"
    if cell.wrong:
        text += f" **wrong** {cell.wrong}/{cell.calls}"
    if len(cell.samples) < results.plan.rounds:
        text += f" n={len(cell.samples)}"
    return text


def _size_table(results: Results, size: int) -> str:
    rows = []
    for subject in results.subjects:
        if (size, OPERATIONS[0], subject.key) not in results.cells:
            continue
        row = [subject.backend, subject.store]
        row += [_cell_text(results, size, op, subject) for op in OPERATIONS]
        rows.append(row)
    header = ["backend", "store"] + [OPERATION_TITLES[op] for op in OPERATIONS]
    return f"## N = {size:,} tokens\n\nmedian / p95 (median ÷ floor)\n\n" + _table(
        header, rows
    )


def _encryption_cost(results: Results) -> str:
    """Our store with a key against the same store without, per backend."""
    rows = []
    for subject in results.subjects:
        if not subject.is_encrypted:
            continue
        sizes = [s for s in results.sizes_of(subject.key)
                 if s in results.sizes_of(subject.plain_key)]
        if not sizes:
            continue
        size = sizes[-1]
        for operation in OPERATIONS:
            plain = results.median(size, operation, subject.plain_key)
            sealed = results.median(size, operation, subject.key)
            if plain is None or sealed is None:
                continue
            rows.append([
                subject.backend, f"{size:,}", OPERATION_TITLES[operation],
                us(plain), us(sealed), f"{sealed - plain:+,.0f} µs",
                f"{sealed / plain:.2f}×",
            ])
    if not rows:
        return ""
    return (
        "## What encryption adds\n\n"
        "Our store with one Fernet key (tokens and the client secret "
        "encrypted, in a table of its own filled alike) against our store "
        "without keys, medians at the largest N both reached. A find "
        "decrypts the found row's three values; a save encrypts the ones "
        "it writes.\n\n"
        + _table(["backend", "N", "operation", "without keys", "with a key",
                  "added", "ratio"], rows)
    )


def _problems(results: Results) -> str:
    seen: Dict[Tuple[str, str, str], List[str]] = {}
    for (size, operation, key), cell in results.cells.items():
        problem = cell.problem or cell.warmup_problem
        if not problem:
            continue
        subject = results.stage.by_key(key)
        if cell.status == "ok":
            counted = "in warm-up only"
        else:
            counted = f"{cell.status} {cell.failed or cell.wrong}/{cell.calls}"
        bucket = (subject.backend + ", " + subject.store,
                  OPERATION_TITLES[operation], problem)
        seen.setdefault(bucket, []).append(f"N={size:,}: {counted}")
    if not seen:
        return "## Failed and wrong calls\n\nNone: every answer was right."
    lines = ["## Failed and wrong calls", ""]
    for (store, operation, problem), where in sorted(seen.items()):
        lines.append(f"- {store}, {operation} ({'; '.join(where)}): {problem}")
    lines += [""] + results.notes
    return "\n".join(lines)


def _cap_text(results: Results, subject, cap: int) -> str:
    text = (
        f"- {subject.store} ({subject.backend}): capped at N = {cap:,}. It "
        "reads the whole file for every find and rewrites it for every "
        "save, so its time grows in proportion to N"
    )
    save = results.median(cap, "save_update", subject.key)
    if save:
        largest = max(results.plan.sizes)
        text += (
            f": its saves took {us(save)} at {cap:,} tokens, so about "
            f"{us(save * largest / cap)} each at {largest:,}"
        )
    return text + "."


def _limits(results: Results) -> str:
    lines = []
    for subject in results.subjects:
        cap = results.plan.caps.get(subject.cap_key)
        if cap is not None and cap < max(results.plan.sizes):
            lines.append(_cap_text(results, subject, cap))
    sat_out = [
        f"{results.stage.by_key(key).store} ({results.stage.by_key(key).backend})"
        f" {OPERATION_TITLES[op]} at N={size:,}: n={len(cell.samples)}"
        for (size, op, key), cell in sorted(results.cells.items())
        if cell.sat_out
    ]
    if sat_out:
        lines.append(
            f"- Stopped by the {results.plan.budget:g} s time budget: "
            + "; ".join(sat_out) + "."
        )
    for backend, reason in results.stage.missing.items():
        lines.append(f"- {backend}: left out, not reachable ({reason}).")
    if not lines:
        return ""
    return "## Caps and budgets\n\n" + "\n".join(lines)


# -- round trips ----------------------------------------------------------------


def _sequence(counter: Dict[str, int], calls: int) -> str:
    if not counter:
        return "0"
    total = sum(counter.values())
    parts = []
    for label, count in counter.items():
        times = _per_call(count, calls)
        parts.append(label if times == "1" else f"{times}× {label}")
    return f"{_per_call(total, calls)}: " + ", ".join(parts)


def _events(events: Dict[str, int], prefix: str, calls: int) -> Dict[str, int]:
    return {
        name[len(prefix):]: count
        for name, count in events.items()
        if name.startswith(prefix)
    }


def _pool_text(events: Dict[str, int], calls: int) -> str:
    parts = []
    for name in ("checkout", "checkin", "reset", "connect"):
        count = events.get(f"pool {name}", 0)
        if count:
            parts.append(f"{_per_call(count, calls)} {name}")
    for name in ("begin", "commit", "rollback"):
        count = events.get(f"sqlalchemy {name}", 0)
        if count:
            parts.append(f"{_per_call(count, calls)} {name}()")
    return ", ".join(parts) or "-"


def _trip_cell(backend: str, found: dict, phase: str, saving: bool) -> str:
    calls = found["calls"]
    events = found["events"].get(phase, {}).get("events", {})
    wire = found["wire"].get(phase, {})
    if backend == "sqlite":
        text = _sequence(_events(events, "sqlite ", calls), calls)
        if saving and found["strace"]:
            text += f"; {_per_call(wire.get('fsyncs', 0), calls)} fsync"
        return text
    if not found["strace"]:
        return "?"
    return _sequence(wire.get("sends", {}), calls)


def _trip_rows(backend: str, found: dict) -> List[List[str]]:
    calls = found["calls"]
    rows = []
    for operation in OPERATIONS:
        row = [OPERATION_TITLES[operation]]
        saving = operation.startswith("save")
        for key in _trip_keys(backend):
            phase = f"{key}:{operation}"
            row.append(_trip_cell(backend, found, phase, saving))
            if key.startswith("ours"):
                events = found["events"].get(phase, {}).get("events", {})
                row.append(_sequence(_events(events, "execute ", calls), calls))
                row.append(_pool_text(events, calls))
        rows.append(row)
    return rows


def _trip_keys(backend: str) -> List[str]:
    keys = [f"ours-{backend}", f"floor-{backend}"]
    return keys + (["sdk-db"] if backend == "mariadb" else [])


def _round_trips(results: Results) -> str:
    if not results.trips:
        return ""
    parts = [
        "## Round trips per call",
        "",
        "Counted over a few calls of each operation in a child process. "
        "On PostgreSQL and MariaDB, *wire* is every message sent to the "
        "server (strace's `sendto`), each a round trip, named by its first "
        "SQL word. On SQLite, *statements* are what SQLite ran (its trace "
        "callback, which sees the sqlite3 module's own BEGIN and COMMIT), "
        "and *fsync* counts the saves' syncs. *SQLAlchemy* lists the "
        "statements the store executed through SQLAlchemy, *pool & "
        "transaction* the pool's events and the transaction calls per call "
        "(a `rollback()` on an autocommit connection sends nothing).",
    ]
    for backend, found in results.trips.items():
        if "error" in found:
            title = BACKEND_KEYS[backend]
            parts.append(f"\n### {title}\n\nnot counted: {found['error']}")
            continue
        kind = "statements" if backend == "sqlite" else "wire"
        header = ["operation", f"sqlstore {kind}", "sqlstore SQLAlchemy",
                  "sqlstore pool & transaction", f"floor {kind}"]
        if backend == "mariadb":
            header.append("SDK DBStore wire")
        parts.append(f"\n### {BACKEND_KEYS[backend]} ({found['calls']} calls each)\n")
        parts.append(_table(header, _trip_rows(backend, found)))
        if not found["strace"] and backend != "sqlite":
            parts.append("\n(strace was not found: wire counts are missing.)")
    return "\n".join(parts)


# -- profile ----------------------------------------------------------------------


def _where_time_goes(results: Results) -> str:
    if not results.profiles:
        return ""
    from .profiling import LAYERS

    parts = [
        "## Where our store's time goes",
        "",
        "The layer-by-layer table makes the same lookup on our table with "
        "more of the stack each time; the step between two rungs is that "
        "layer's cost. Then, per operation: *unprofiled*: medians of a "
        "batch of calls, split with SQLAlchemy's cursor events into time "
        "inside `cursor.execute` (driver, network and server) and "
        "everything else (sqlstore, SQLAlchemy, the SDK's token objects, "
        "pool; a transaction's COMMIT counts here too). "
        "*Profiled*: cProfile's own time per call by layer, which inflates "
        "Python code more than C, so read it as proportions.",
    ]
    for key, operations in results.profiles.items():
        subject = results.stage.by_key(key)
        header = ["", *(OPERATION_TITLES[op] for op in OPERATIONS)]
        rows = [
            [label] + [us(operations[op][name]) for op in OPERATIONS]
            for label, name in (
                ("unprofiled median", "median"),
                ("…inside execute", "execute"),
                ("…outside execute", "python"),
            )
        ]
        for layer in LAYERS:
            rows.append([f"profiled: {layer}"] + [
                us(operations[op]["layers"][layer]) for op in OPERATIONS
            ])
        parts.append(f"\n### {subject.backend}\n")
        parts.append(_ladder(results.ladders.get(key)))
        parts.append(_table(header, rows))
        parts.append(_top_functions(operations))
    return "\n".join(parts)


def _ladder(found: Optional[dict]) -> str:
    if not found:
        return ""
    if "error" in found:
        return f"Layer by layer: not measured ({found['error']}).\n"
    from .ladder import BASES, RUNGS

    rows = []
    for rung, base in zip(RUNGS, BASES):
        median = found[rung]
        step = "-"
        if base is not None:
            added = median - found[RUNGS[base]]
            step = ("+" if added >= 0 else "−") + us(abs(added))
        rows.append([rung, us(median), step])
    note = (f"\n\n({found['missing']} lookups found nothing.)"
            if found.get("missing") else "")
    return (
        "One find by user, layer by layer (unprofiled medians, the rungs "
        "called in turn):\n\n"
        + _table(["way", "median", "added by this layer"], rows) + note + "\n"
    )


def _top_functions(operations: dict) -> str:
    lines = ["", "Largest own times under cProfile (µs per call):", ""]
    for operation in ("find_user", "save_update", "save_insert"):
        top = operations[operation]["top"][:6]
        shown = "; ".join(f"`{name}` {own:.0f}" for name, own in top)
        lines.append(f"- {OPERATION_TITLES[operation]}: {shown}")
    return "\n".join(lines)


def _query_plans(results: Results) -> str:
    if not results.plans:
        return ""
    rows = []
    for key, plans in results.plans.items():
        backend = results.stage.by_key(key).backend
        for plan in plans:
            rows.append([backend, OPERATION_TITLES[plan["operation"]],
                         f"`{plan['statement']}`", plan["plan"]])
    return (
        "## Query plans of our store's statements\n\n"
        "Each SELECT and UPDATE our store sent for one call, run again "
        "under EXPLAIN with its own parameters.\n\n"
        + _table(["backend", "operation", "statement", "plan"], rows)
    )


def _memory(results: Results) -> str:
    if not results.memory:
        return ""
    rows = []
    for backend, found in results.memory.items():
        if "error" in found:
            rows.append([backend, "-", "-", "-", "-", found["error"]])
            continue
        points = ", ".join(f"{kib / 1024:.1f}" for _, kib in found["points"])
        rows.append([
            backend,
            f"{found['calls']:,} in {found['seconds']:.0f} s",
            f"{found['start_kib'] / 1024:.1f} MiB",
            f"{found['warm_kib'] / 1024:.1f} MiB",
            f"{found['end_kib'] / 1024:.1f} MiB "
            f"({found['end_kib'] - found['warm_kib']:+,} KiB)",
            points + (f"; {found['wrong']} wrong answers" if found["wrong"] else ""),
        ])
    users = max(found.get("users", 0) for found in results.memory.values())
    return (
        "## Memory: RSS of a process making find_token calls on our store\n\n"
        f"({users:,} users.) "
        "A child process saves users of its own, then makes the calls "
        "(by user, access token and refresh token in turn), building each "
        "probe as the SDK does. *Warm* is after the first 1% of the calls.\n\n"
        + _table(["backend", "calls", "start", "warm", "end (growth from warm)",
                  "RSS at each tenth (MiB)"], rows)
    )


def _fills(results: Results) -> str:
    rows = [
        [s.backend, s.store, f"{results.stage.filled.get(s.key, 0):,}",
         f"{results.stage.fill_seconds.get(s.key, 0.0):.1f} s"]
        for s in results.subjects
    ]
    table = _table(["backend", "store", "tokens", "fill time"], rows)
    return "## Fills and run time\n\n" + table + "\n\n" + "\n".join(
        results.footer
    )
