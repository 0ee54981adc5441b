"""What sqlstore.sdkversions says of the SDK this environment holds."""

from __future__ import annotations

import pytest
from sdkrequire import promised

from sqlstore import sdkversions


def test_the_installed_sdk_is_the_one_promised():
    found = sdkversions.installed()
    wanted = promised()
    print(f"installed={found} promised={wanted}")
    assert found is not None
    if wanted is not None:
        assert (found.name, found.version) == wanted


def test_each_known_distribution_has_its_crm_api_version():
    assert set(sdkversions.CRM_API_VERSIONS) == set(
        sdkversions.CURRENT + sdkversions.LEGACY
    )
    found = sdkversions.installed()
    family = (
        sdkversions.CURRENT
        if found.name in sdkversions.CURRENT
        else (sdkversions.LEGACY)
    )
    assert (
        sdkversions.crm_api_version(family)
        == (sdkversions.CRM_API_VERSIONS[found.name])
    )


def test_only_zohocrmsdk5_leaves_the_user_name_to_the_application():
    found = sdkversions.installed(sdkversions.CURRENT)
    if found is None:
        pytest.skip("no current-family SDK here")
    assert sdkversions.sdk_names_users() == (found.name != "zohocrmsdk5-0")


@pytest.mark.parametrize(
    "explain",
    [sdkversions.current_sdk_import_problem, sdkversions.legacy_sdk_import_problem],
)
def test_a_missing_mysql_driver_gets_its_pip_line(explain):
    err = ModuleNotFoundError("No module named 'mysql'", name="mysql")
    assert "pip install mysql-connector-python" in explain(err)
    other = ModuleNotFoundError("No module named 'zcrmsdk'", name="zcrmsdk")
    assert "mysql" not in explain(other)
