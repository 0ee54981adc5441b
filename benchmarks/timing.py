"""Timing call by call, the stores taken in turn within every round.

Each round calls every operation once on every store, with the same user
for all of them, and the order of the stores rotates from round to round:
whatever noise the machine has at a moment is shared by all the stores
rather than landing on whichever ran then.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import time
from typing import Dict, List, Optional, Tuple

from . import data, settings
from .settings import Plan
from .subjects import Subject


@dataclasses.dataclass
class Cell:
    """The calls of one operation on one store at one size."""

    samples: List[int] = dataclasses.field(default_factory=list)  # ns
    calls: int = 0
    failed: int = 0
    wrong: int = 0
    problem: Optional[str] = None  # the first of the timed calls
    warmup_problem: Optional[str] = None
    spent: float = 0.0  # seconds, checks included: what the budget counts
    sat_out: bool = False

    def stats(self) -> Optional[Tuple[float, float]]:
        """Median and 95th percentile in microseconds."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return _rank(ordered, 0.5) / 1e3, _rank(ordered, 0.95) / 1e3

    @property
    def status(self) -> str:
        if self.failed:
            return "failed"
        if self.wrong:
            return "wrong"
        return "ok"


def _rank(ordered: List[int], fraction: float) -> float:
    """The nearest-rank percentile; the median of an even count averages."""
    count = len(ordered)
    if fraction == 0.5 and count % 2 == 0:
        return (ordered[count // 2 - 1] + ordered[count // 2]) / 2
    return float(ordered[max(0, math.ceil(fraction * count) - 1)])


class Runner:
    """Holds every cell, and which generation each user is at per store."""

    def __init__(self, plan: Plan, seed: int = 20260101):
        self.plan = plan
        self.random = random.Random(seed)
        self.cells: Dict[Tuple[int, str, str], Cell] = {}
        self.generations: Dict[str, Dict[int, int]] = {}
        self.inserted = 0

    def cell(self, size: int, operation: str, key: str) -> Cell:
        return self.cells.setdefault((size, operation, key), Cell())

    def spec(self, key: str, index: int) -> data.TokenSpec:
        generation = self.generations.setdefault(key, {}).get(index, 0)
        return data.TokenSpec(index, generation)

    def run_size(self, size: int, subjects: List[Subject]) -> None:
        gc.collect()
        total = self.plan.warmup + self.plan.rounds
        for number in range(total):
            timed = number >= self.plan.warmup
            order = _rotated(subjects, number)
            for operation in settings.OPERATIONS:
                index = self._pick(operation, size)
                for subject in order:
                    cell = self.cell(size, operation, subject.key)
                    if timed and self._over_budget(cell):
                        continue
                    self._call(subject, operation, index, cell, timed)

    def _pick(self, operation: str, size: int) -> int:
        if operation == "save_insert":
            self.inserted += 1
            return data.INSERT_BASE + self.inserted
        return self.random.randrange(size)

    def _over_budget(self, cell: Cell) -> bool:
        over = cell.spent >= self.plan.budget and (
            len(cell.samples) >= self.plan.min_samples
        )
        cell.sat_out = cell.sat_out or over
        return over

    def _call(self, subject, operation, index, cell: Cell, timed: bool) -> None:
        spec = self.spec(subject.key, index)
        if operation == "save_update":
            spec = spec.next()
        begun = time.perf_counter()
        call, check = subject.prepare(operation, spec)
        try:
            start = time.perf_counter_ns()
            result = call()
            elapsed = time.perf_counter_ns() - start
        except Exception as err:  # a store's failure is a result, not a crash
            self._record_failure(cell, err, timed)
        else:
            if operation == "save_update":
                self.generations[subject.key][index] = spec.generation
            self._record(cell, elapsed, check, result, timed)
        if timed:
            cell.spent += time.perf_counter() - begun

    def _record(self, cell: Cell, elapsed: int, check, result, timed) -> None:
        try:
            problem = check(result)
        except Exception as err:
            problem = f"its check raised {_describe(err)}"
        if not timed:
            return
        cell.calls += 1
        cell.samples.append(elapsed)
        if problem is not None:
            cell.wrong += 1
            cell.problem = cell.problem or problem

    def _record_failure(self, cell: Cell, err: Exception, timed: bool) -> None:
        if not timed:
            cell.warmup_problem = cell.warmup_problem or _describe(err)
            return
        cell.calls += 1
        cell.failed += 1
        cell.problem = cell.problem or _describe(err)


def _rotated(subjects: List[Subject], number: int) -> List[Subject]:
    shift = number % len(subjects) if subjects else 0
    return subjects[shift:] + subjects[:shift]


def _describe(err: BaseException) -> str:
    """One line naming an error and, for the SDK's, the error inside it."""
    text = f"{type(err).__name__}: {_first_line(err)}"
    cause = getattr(err, "cause", None) or err.__cause__
    if cause is not None and cause is not err:
        text += f" (cause {type(cause).__name__}: {_first_line(cause)})"
    return text[:240]


def _first_line(err: BaseException) -> str:
    message = str(err).strip()
    return message.splitlines()[0] if message else "no message"
