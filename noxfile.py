"""The test suite against each Zoho SDK distribution, one venv per session.

The SDK's distributions cannot share an environment: those of the current
family all install the same ``zohocrmsdk`` package, and those of the older
one the same ``zcrmsdk``. Each session here gets a fresh venv holding
sqlstore, its database drivers, the test tools and exactly one SDK, then
runs the suites that SDK drives, on every backend (a backend that does not
answer fails the session, as in CI)::

    nox                      # every session below
    nox -s sdk               # the current family, each version
    nox -s legacy            # the older family, each distribution
    nox -s "sdk(zohocrmsdk6-0-8.0.0)"   # one of them
    nox -l                   # list them

``-r`` reuses the venvs between runs on a laptop; CI makes them anew.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["sdk", "legacy"]
nox.options.reuse_venv = "no"

# Each current-family distribution at its newest release; 5.0 also at 1.0.0,
# its only other one.
CURRENT_SDKS = (
    "zohocrmsdk8-0==7.0.0",
    "zohocrmsdk7-0==6.0.0",
    "zohocrmsdk6-0==8.0.0",
    "zohocrmsdk5-0==2.0.0",
    "zohocrmsdk5-0==1.0.0",
)
LEGACY_SDKS = (
    "zcrmsdk==3.1.0",
    "zohocrmsdk2-0==6.0.0",
    "zohocrmsdk2-1==3.0.0",
)
# What an SDK imports without declaring it as a dependency: zohocrmsdk5-0
# 1.0.0 and zcrmsdk 3.x load their MySQL store, and so mysql.connector, on
# every import.
UNDECLARED = {
    "zohocrmsdk5-0==1.0.0": ("mysql-connector-python",),
    "zcrmsdk==3.1.0": ("mysql-connector-python",),
}
# The SDK whose interpreter the migration tests hand tokens to and take
# them from.
MIGRATION_PARTNER = CURRENT_SDKS[0]

CURRENT_SUITE = (
    "tests/test_contract.py",
    "tests/test_e2e.py",
    "tests/test_sdkversions.py",
)
LEGACY_SUITE = (
    "tests/test_sdkversions.py",
    "tests/test_legacy_contract.py",
    "tests/test_legacy_e2e.py",
    "tests/test_migration.py",
)


def _params(specs):
    return [nox.param(spec, id=spec.replace("==", "-")) for spec in specs]


def _run_suite(session: nox.Session, spec: str, suite, extra_env=None) -> None:
    # SQLSTORE_TEST_SDK makes the suite check that this very distribution
    # and version is what it imports, and fail rather than skip without it.
    env = {"SQLSTORE_REQUIRE_BACKENDS": "1", "SQLSTORE_TEST_SDK": spec}
    env.update(extra_env or {})
    # pytest's exit status 5 (nothing collected) fails the session too.
    session.run("python", "-m", "pytest", *suite, *session.posargs, env=env)


@nox.session
@nox.parametrize("distribution", _params(CURRENT_SDKS))
def sdk(session: nox.Session, distribution: str) -> None:
    """Contract and end-to-end suites with one current-family SDK."""
    session.install(
        "-e", ".[test-base]", distribution, *UNDECLARED.get(distribution, ())
    )
    _run_suite(session, distribution, CURRENT_SUITE)


@nox.session
@nox.parametrize("distribution", _params(LEGACY_SDKS))
def legacy(session: nox.Session, distribution: str) -> None:
    """LegacySqlAlchemyStore with one older-family SDK, and migrations."""
    session.install(
        "-e", ".[test-base]", distribution, *UNDECLARED.get(distribution, ())
    )
    partner = _partner_interpreter(session)
    _run_suite(
        session,
        distribution,
        LEGACY_SUITE,
        {"SQLSTORE_CURRENT_SDK_PYTHON": partner},
    )


def _partner_interpreter(session: nox.Session) -> str:
    """A second venv, holding the current SDK, for the migration tests."""
    where = f"{session.create_tmp()}/current-sdk"
    session.run("python", "-m", "venv", "--clear", where, silent=True)
    python = f"{where}/bin/python"
    session.run(
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "-e",
        ".[postgres,mysql]",
        MIGRATION_PARTNER,
        external=True,
    )
    return python
