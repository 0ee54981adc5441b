"""Users of their own for the side measurements, and calls on them.

The round-trip count, the profile and the memory measurement each save a
few users of their own first (numbered from their own base), so that they
need nothing from the timed run's bookkeeping and change none of its rows.
"""

from __future__ import annotations

from typing import Dict, List

from . import data
from .subjects import Subject

# Users that a side measurement's "save (insert)" adds start here above
# its base.
_INSERT_OFFSET = 5_000_000


class OwnUsers:
    """``count`` users from ``base``, and each one's generation per store."""

    def __init__(self, base: int, count: int):
        self.base = base
        self.count = count
        self.generations: Dict[str, Dict[int, int]] = {}
        self.inserted = 0

    def seed(self, subject: Subject) -> int:
        """Save every user once, with the id the spec names.

        Returns how many saves failed. The SDK's stores may fail (without
        their driver, or through their own bugs) and are then counted as
        failing; our store or a floor failing here is an error.
        """
        failed = 0
        for index in range(self.base, self.base + self.count):
            call, _ = subject.prepare("save_update", data.TokenSpec(index))
            try:
                call()
            except Exception:
                if subject.is_ours or subject.is_floor:
                    raise
                failed += 1
        return failed

    def spec(self, subject: Subject, operation: str, number: int):
        """The spec of call ``number`` of an operation on a store."""
        if operation == "save_insert":
            self.inserted += 1
            return data.TokenSpec(self.base + _INSERT_OFFSET + self.inserted)
        index = self.base + number % self.count
        generations = self.generations.setdefault(subject.key, {})
        spec = data.TokenSpec(index, generations.get(index, 0))
        if operation == "save_update":
            spec = spec.next()
            generations[index] = spec.generation
        return spec

    def prepared(self, subject: Subject, operation: str, calls: int) -> List:
        """The calls to make, built ahead so that only they are measured."""
        return [
            subject.prepare(operation, self.spec(subject, operation, n))[0]
            for n in range(calls)
        ]
