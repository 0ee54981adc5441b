"""What a run measures and where: loopback servers, sizes, caps, budgets.

Only the ``sqlstore_bench`` and ``sqlstore_bench_encrypted`` databases are
touched, on 127.0.0.1 alone; the test suite's ``sqlstore_test`` and every
other database are left alone.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Tuple

HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
MYSQL_PORT = 3306
MYSQL_USER = "root"
# SQLSTORE_BENCH_DATABASE moves a run to databases of another name on the
# same loopback servers, so that two runs need not share tables.
DATABASE = os.environ.get("SQLSTORE_BENCH_DATABASE") or "sqlstore_bench"
# Our store with encryption keeps its table of the same name apart.
ENCRYPTED_DATABASE = f"{DATABASE}_encrypted"

PG_URL = f"postgresql+psycopg2://{PG_USER}@{HOST}:{PG_PORT}/{DATABASE}"
MYSQL_URL = f"mysql+pymysql://{MYSQL_USER}@{HOST}:{MYSQL_PORT}/{DATABASE}"
PG_ENCRYPTED_URL = PG_URL.rsplit("/", 1)[0] + "/" + ENCRYPTED_DATABASE
MYSQL_ENCRYPTED_URL = MYSQL_URL.rsplit("/", 1)[0] + "/" + ENCRYPTED_DATABASE

# Table names inside sqlstore_bench: ours is the migrations' own name.
OURS_TABLE = "oauthtoken"
FLOOR_TABLE = "floor_oauthtoken"
SDK_TABLE = "sdk_oauthtoken"

# The operations timed, in the order of a round.
OPERATIONS = (
    "find_user",
    "find_access",
    "find_refresh",
    "find_id",
    "save_update",
    "save_insert",
)
OPERATION_TITLES = {
    "find_user": "find by user",
    "find_access": "find by access token",
    "find_refresh": "find by refresh token",
    "find_id": "find by id",
    "save_update": "save (update)",
    "save_insert": "save (insert)",
}
FIND_OPERATIONS = OPERATIONS[:4]
SAVE_OPERATIONS = OPERATIONS[4:]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much of everything one run does.

    sizes: the table sizes N, each filled before its rounds are timed.
    rounds: timed rounds per size; a round is one call of every operation
        on every store, the stores taken in turn.
    warmup: untimed rounds before those, to fill caches and pools.
    budget: seconds one store may spend on one operation at one size;
        past it (and with min_samples taken) that store sits out the rest
        of those rounds, so that slow stores cannot stretch the run.
    caps: the largest N a store is filled to, by store key.
    memory_calls: find_token calls of the memory measurement.
    memory_users: users that measurement saves for itself first.
    trace_calls: calls per operation whose round trips are counted.
    profile_calls: calls per operation under cProfile, and per rung of
        the layer-by-layer find.
    """

    name: str
    sizes: Tuple[int, ...]
    rounds: int
    warmup: int
    budget: float
    min_samples: int
    caps: Dict[str, int]
    memory_calls: int
    memory_users: int
    trace_calls: int
    profile_calls: int


# The CSV store reads (and, to save, rewrites) the whole file on every
# call: at 100,000 tokens that is about a second a save, so it stops at
# 10,000. The SDK's MySQL store runs at every size under the time budget.
FULL = Plan(
    name="full",
    sizes=(10, 1_000, 10_000, 100_000),
    rounds=300,
    warmup=20,
    budget=6.0,
    min_samples=20,
    caps={"sdk-file": 10_000},
    memory_calls=100_000,
    memory_users=1_000,
    trace_calls=50,
    profile_calls=1_000,
)

QUICK = Plan(
    name="quick",
    sizes=(10, 1_000),
    rounds=10,
    warmup=2,
    budget=0.3,
    min_samples=5,
    caps={"sdk-file": 1_000},
    memory_calls=1_000,
    memory_users=50,
    trace_calls=3,
    profile_calls=50,
)
