"""The older SDK under test, for the legacy suites: import it or skip.

The main test environment holds the current SDK only, so these suites
skip there, with the reason. In a session that promised an older SDK
(``SQLSTORE_TEST_SDK``, set by noxfile.py) a failed import fails instead.
"""

from __future__ import annotations

import pytest
from sdkrequire import legacy_required


def import_legacy():
    """``sqlstore.legacy``, or a skip (a failure where it is required)."""
    try:
        from sqlstore import legacy
    except ImportError as err:
        if legacy_required():
            raise
        pytest.skip(f"no older Zoho SDK here: {err}", allow_module_level=True)
    return legacy


legacy = import_legacy()

from zcrmsdk.src.com.zoho.crm.api.exception import SDKException  # noqa: E402
from zcrmsdk.src.com.zoho.crm.api.user_signature import UserSignature  # noqa: E402

OAuthToken = legacy.OAuthToken
TokenType = legacy.TokenType
get, put = legacy._get, legacy._set


def configured_token(client_id, client_secret, grant=None, refresh=None):
    """A token as an application configures it, in this SDK's own way."""
    if TokenType is None:  # zohocrmsdk2-0, 2-1
        return OAuthToken(
            client_id=client_id,
            client_secret=client_secret,
            grant_token=grant,
            refresh_token=refresh,
        )
    kind = TokenType.GRANT if grant is not None else TokenType.REFRESH
    return OAuthToken(client_id, client_secret, grant or refresh, kind)


def user(email: str):
    return UserSignature(email)


__all__ = [
    "SDKException",
    "UserSignature",
    "OAuthToken",
    "configured_token",
    "get",
    "legacy",
    "put",
    "user",
]
