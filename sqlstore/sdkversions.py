"""Which Zoho SDK is installed, and what its version does its own way.

Zoho publishes one Python SDK per CRM API version. Two interface
generations are in use, each spread over several distributions that
install the same package and so overwrite each other:

- current: ``zohocrmsdk5-0`` to ``zohocrmsdk8-0``, package ``zohocrmsdk``,
  served by ``sqlstore.SqlAlchemyStore``;
- older: ``zcrmsdk`` 3.x, ``zohocrmsdk2-0`` and ``zohocrmsdk2-1``, package
  ``zcrmsdk``, served by ``sqlstore.legacy.LegacySqlAlchemyStore``.

``zcrmsdk`` 1.x and 2.x are a different SDK again (the CRM v2 API's first
one, with a "persistence handler" instead of a token store) and are not
supported.

The differences within a family are found by looking at the SDK's own
classes, not by parsing version numbers: the same feature arrived at
different releases in different distributions.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from typing import NamedTuple, Optional

CURRENT = ("zohocrmsdk8-0", "zohocrmsdk7-0", "zohocrmsdk6-0", "zohocrmsdk5-0")
LEGACY = ("zohocrmsdk2-1", "zohocrmsdk2-0", "zcrmsdk")


class Distribution(NamedTuple):
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def installed(names=CURRENT + LEGACY) -> Optional[Distribution]:
    """The first of the named distributions that is installed, or None."""
    for name in names:
        try:
            return Distribution(name, importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def legacy_zcrmsdk_problem() -> Optional[str]:
    """Why the installed ``zcrmsdk`` cannot be served, or None if it can."""
    found = installed(("zcrmsdk",))
    if found is None or int(found.version.split(".")[0]) >= 3:
        return None
    return (
        f"{found} is the CRM v2 SDK's first generation, whose persistence "
        "handler is not a token store; sqlstore serves zcrmsdk 3.x, "
        "zohocrmsdk2-0 and zohocrmsdk2-1 (pip install 'zcrmsdk>=3,<4')"
    )


# -- the current family -------------------------------------------------------


def undeclared_driver_problem(err: ImportError, family) -> Optional[str]:
    """The pip line for an SDK that failed to import its MySQL driver.

    ``zohocrmsdk5-0`` 1.0.0 and ``zcrmsdk`` 3.x import their MySQL store,
    and so ``mysql.connector``, on every import, without declaring it as a
    dependency.
    """
    if not err.name or err.name.split(".")[0] != "mysql":
        return None
    return (
        f"the installed Zoho SDK ({installed(family)}) imports "
        "mysql.connector without installing it: "
        "pip install mysql-connector-python"
    )


def current_sdk_import_problem(err: ImportError) -> str:
    """What to install when importing the current SDK failed with ``err``."""
    return undeclared_driver_problem(err, CURRENT) or (
        "sqlstore.SqlAlchemyStore needs Zoho's CRM SDK: "
        'pip install "sqlstore[zoho]" (zohocrmsdk8-0), or install the '
        "zohocrmsdk5-0, 6-0 or 7-0 distribution your application uses"
    )


def legacy_sdk_import_problem(err: ImportError) -> str:
    """What to install when importing an older SDK failed with ``err``."""
    return undeclared_driver_problem(err, LEGACY) or (
        "sqlstore.legacy.LegacySqlAlchemyStore needs one of Zoho's older "
        "CRM SDKs: pip install zohocrmsdk2-1 (or zohocrmsdk2-0, or "
        "'zcrmsdk>=3,<4'); for zohocrmsdk5-0 to 8-0 use "
        "sqlstore.SqlAlchemyStore"
    )


def sdk_names_users() -> bool:
    """Whether the current SDK asks the CRM for the user's name itself.

    From ``zohocrmsdk6-0`` on, the SDK fetches ``<e-mail>:<org zgid>``
    after the first exchange and saves the token under it; ``zohocrmsdk5-0``
    saves it under whatever ``user_signature`` the application gave, or
    none.
    """
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken

    return "find_user" in inspect.signature(OAuthToken.__init__).parameters


def environment_takes_name(environment_class) -> bool:
    """Whether a ``DataCenter.Environment`` is also given a name (5.0, 2.x)."""
    return "name" in inspect.signature(environment_class.__init__).parameters


# The CRM API version in the paths each distribution calls.
CRM_API_VERSIONS = {
    "zohocrmsdk8-0": "v8",
    "zohocrmsdk7-0": "v7",
    "zohocrmsdk6-0": "v6",
    "zohocrmsdk5-0": "v5",
    "zohocrmsdk2-1": "v2.1",
    "zohocrmsdk2-0": "v2",
    "zcrmsdk": "v2",
}


def crm_api_version(family=CURRENT) -> Optional[str]:
    """The CRM API version (``v8``, ``v2.1``) the family's installed SDK calls."""
    found = installed(family)
    return CRM_API_VERSIONS[found.name] if found is not None else None
