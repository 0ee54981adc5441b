"""The SDKs' ``expires_in``: a string of epoch milliseconds, as a number.

Every Zoho SDK, of either family, writes the moment its access token
expires as a decimal string; the table keeps it as a BIGINT.
"""

from __future__ import annotations

import re
from typing import Optional

# ASCII digits and nothing else, so that the string comes back exactly as
# it went in: no leading zero, and no more digits than a BIGINT holds.
_MILLISECONDS = re.compile(r"0|[1-9][0-9]{0,18}")


def parse_expires_in(expires_in) -> Optional[int]:
    """Epoch milliseconds from the SDK's string; None when it has none."""
    if expires_in is None or expires_in == "":
        return None
    if isinstance(expires_in, int) and not isinstance(expires_in, bool):
        return expires_in
    if isinstance(expires_in, str) and _MILLISECONDS.fullmatch(expires_in):
        return int(expires_in)
    raise ValueError(
        "token field expires_in must be a string of epoch milliseconds "
        f"such as '1767225600000', got a {type(expires_in).__name__} that "
        "is not one"
    )
