"""The SDK a per-distribution test session promised, checked at the start.

noxfile.py sets ``SQLSTORE_TEST_SDK`` to the one distribution it installed
(``zohocrmsdk6-0==8.0.0``). A run that imports some other SDK, or none,
would test the wrong thing or skip everything and still pass; it stops
here instead.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Optional

import pytest

ENV_VAR = "SQLSTORE_TEST_SDK"


def promised() -> Optional[tuple]:
    """(distribution, version) the session promised, or None."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return None
    name, _, version = spec.partition("==")
    return name, version


def check_installed() -> None:
    wanted = promised()
    if wanted is None:
        return
    name, version = wanted
    try:
        found = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        found = None
    if found != version:
        pytest.exit(
            f"{ENV_VAR} promises {name}=={version}, but this environment "
            f"has {name} {found or 'not installed'}",
            returncode=3,
        )


def legacy_required() -> bool:
    """Whether this session tests the older family: its tests may not skip."""
    wanted = promised()
    return wanted is not None and wanted[0] in (
        "zcrmsdk",
        "zohocrmsdk2-0",
        "zohocrmsdk2-1",
    )
