"""One application process using an older SDK with ``LegacySqlAlchemyStore``.

The twin of ``sqlstore.scenario`` for ``zcrmsdk`` 3.x, ``zohocrmsdk2-0``
and ``zohocrmsdk2-1``: the end-to-end and migration tests start it in fresh
interpreters, pointed at the Zoho stand-in and one database::

    echo '{"database_url": "...", "zoho_url": "...", "client_id": "...",
        "client_secret": "...", "user_name": "ada@example.com",
        "grant_token": "..."}' | python -m sqlstore.legacy_scenario

These SDKs are always told who the user is (an e-mail address), and are
configured with a grant token or a refresh token; the 2.x ones may be
given a stored token's id instead. The process reads Leads once and prints
one line of JSON, as ``sqlstore.scenario`` does.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Optional

from .scenario import Outcome, main, read_leads, sdk_environment


def run(
    database_url: Optional[str],
    zoho_url: str,
    client_id: str,
    client_secret: str,
    user_name: str,
    grant_token: Optional[str] = None,
    refresh_token: Optional[str] = None,
    token_id: Optional[str] = None,
    store=None,
) -> Outcome:
    """Initialize the older SDK as an application would; read Leads once.

    ``store`` replaces ``database_url`` for an in-memory database.
    """
    from zcrmsdk.src.com.zoho.api.logger import Logger
    from zcrmsdk.src.com.zoho.crm.api.initializer import Initializer
    from zcrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
    from zcrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

    from . import legacy
    from .standin import TOKEN_PATH

    if store is None:
        store = legacy.LegacySqlAlchemyStore(database_url)
    token = _token(client_id, client_secret, grant_token, refresh_token, token_id)
    with tempfile.TemporaryDirectory() as resource_path:
        # The SDK's log file goes to the working directory unless told.
        logger = Logger.get_instance(
            Logger.Levels.INFO, os.path.join(resource_path, "sdk.log")
        )
        Initializer.initialize(
            user=UserSignature(user_name),
            environment=sdk_environment("zcrmsdk", zoho_url, TOKEN_PATH),
            token=token,
            store=store,
            sdk_config=SDKConfig(auto_refresh_fields=False),
            resource_path=resource_path,
            logger=logger,
        )
        count = read_leads("zcrmsdk")
    return Outcome(
        records=count,
        user_name=legacy._get(token, "user_mail"),
        token_id=legacy._get(token, "id"),
    )


def _token(client_id, client_secret, grant_token, refresh_token, token_id):
    from . import legacy

    if legacy.TokenType is None:  # zohocrmsdk2-0, 2-1
        return legacy.OAuthToken(
            client_id=client_id,
            client_secret=client_secret,
            grant_token=grant_token,
            refresh_token=refresh_token,
            id=token_id,
        )
    if token_id is not None:
        raise ValueError("zcrmsdk 3.x tokens are not looked up by id")
    # zcrmsdk 3.x: one token value and its type.
    if grant_token is not None:
        return legacy.OAuthToken(
            client_id, client_secret, grant_token, legacy.TokenType.GRANT
        )
    return legacy.OAuthToken(
        client_id, client_secret, refresh_token, legacy.TokenType.REFRESH
    )


if __name__ == "__main__":
    sys.exit(main(run))
