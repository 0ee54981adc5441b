"""One application process using the real SDK with ``SqlAlchemyStore``.

``sqlstore demo`` and the end-to-end tests start this module in fresh
interpreters, as separate application processes would be, each pointed at
a Zoho stand-in (``sqlstore.standin``) and one database::

    echo '{"database_url": "...", "zoho_url": "...", "client_id": "...",
        "client_secret": "...", "grant_token": "..."}' | python -m sqlstore.scenario

The process initializes the SDK with whichever of grant_token,
refresh_token and user_name it is given, reads Leads once, and prints one
line of JSON: how many records it read and the user and token id it ended
with. Nothing it prints holds a token value. An ``options`` object, if
given, holds ``EngineOptions`` fields for the store (``{"leases": false}``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Callable, Optional

LEAD_FIELDS = "Last_Name,Company,Email"


@dataclass
class Outcome:
    records: int
    user_name: Optional[str]
    token_id: Optional[str]
    error: Optional[str] = None


def run(
    database_url: Optional[str],
    zoho_url: str,
    client_id: str,
    client_secret: str,
    grant_token: Optional[str] = None,
    refresh_token: Optional[str] = None,
    user_name: Optional[str] = None,
    store=None,
    options: Optional[dict] = None,
) -> Outcome:
    """Initialize the SDK as an application would and read Leads once.

    ``store`` replaces ``database_url`` for an in-memory database, which
    only the process that made it can reach. ``options``: keyword
    arguments of the store's ``EngineOptions``.
    """
    from .config import EngineOptions
    from .zoho import SqlAlchemyStore

    made_here = store is None
    if made_here:
        options = EngineOptions(**(options or {}))
        store = SqlAlchemyStore(database_url, options=options)
    token_values = dict(
        client_id=client_id,
        client_secret=client_secret,
        grant_token=grant_token,
        refresh_token=refresh_token,
    )
    try:
        return _run_sdk(zoho_url, token_values, user_name, store)
    finally:
        if made_here:
            # A process may run several times (the tests' worker pools):
            # each run leaves no connection open behind it.
            store.close()


def _run_sdk(zoho_url: str, token_values: dict, user_name, store) -> Outcome:
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

    from .standin import TOKEN_PATH

    token = OAuthToken(
        **token_values,
        user_signature=UserSignature(user_name) if user_name else None,
    )
    with tempfile.TemporaryDirectory() as resource_path:
        Initializer.initialize(
            environment=sdk_environment("zohocrmsdk", zoho_url, TOKEN_PATH),
            token=token,
            store=store,
            resource_path=resource_path,
        )
        count = read_leads("zohocrmsdk")
    signature = token.get_user_signature()
    return Outcome(
        records=count,
        user_name=signature.get_name() if signature else None,
        token_id=token.get_id(),
    )


def sdk_environment(package: str, zoho_url: str, token_path: str):
    """A data centre of the SDK ``package`` (zohocrmsdk or zcrmsdk) whose
    accounts and CRM servers are the stand-in at ``zoho_url``."""
    from .sdkversions import environment_takes_name

    module = f"{package}.src.com.zoho.crm.api.dc.data_center"
    environment = importlib.import_module(module).DataCenter.Environment
    arguments = [zoho_url, zoho_url + token_path, zoho_url]
    if environment_takes_name(environment):
        # zohocrmsdk 6.0 on and zcrmsdk 2.x name it; 2.x puts the name into
        # the ids it makes for new tokens.
        arguments.append("standin")
    return environment(*arguments)


def read_leads(package: str) -> int:
    """Read Leads once through the SDK ``package``; how many came back."""
    api = importlib.import_module(f"{package}.src.com.zoho.crm.api")
    record = importlib.import_module(f"{package}.src.com.zoho.crm.api.record")
    params = api.ParameterMap()
    params.add(record.GetRecordsParam.fields, LEAD_FIELDS)
    if inspect.signature(record.RecordOperations).parameters:
        response = record.RecordOperations("Leads").get_records(params)
    else:  # zohocrmsdk5-0 and the zcrmsdk family name the module on each call
        response = record.RecordOperations().get_records("Leads", params)
    if response is None or not isinstance(
        response.get_object(), record.ResponseWrapper
    ):
        status = response.get_status_code() if response is not None else "none"
        raise RuntimeError(f"reading Leads failed (HTTP status {status})")
    return len(response.get_object().get_data())


def run_in_new_interpreter(
    python: Optional[str] = None, module: str = "sqlstore.scenario", **arguments
) -> Outcome:
    """``run`` in a fresh Python process, as another application would.

    python: the interpreter, by default this one; another venv's holds
        another SDK. module: the scenario to run, this one or
        ``sqlstore.legacy_scenario``.
    """
    import subprocess

    environment = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        environment.pop(name, None)
    # The arguments go in on stdin: a command line is visible to every
    # local user, and these carry a client secret and a database URL.
    finished = subprocess.run(
        [python or sys.executable, "-m", module],
        input=json.dumps(arguments),
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    lines = finished.stdout.strip().splitlines()
    if finished.returncode != 0 or not lines:
        detail = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"scenario process failed: {detail}")
    return Outcome(**json.loads(lines[-1]))


def main(run_scenario: Optional[Callable[..., Outcome]] = None) -> int:
    """Run the scenario on the JSON arguments read from stdin."""
    arguments = json.loads(sys.stdin.read())
    try:
        outcome = (run_scenario or run)(**arguments)
    except Exception as err:  # reported to the parent as one line
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
