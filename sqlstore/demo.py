"""``sqlstore demo``: the SDK's token lifecycle, shown step by step.

It needs no Zoho account: a stand-in for Zoho's servers runs on the
loopback address, and each step is a new Python process using the real SDK
with ``SqlAlchemyStore``, as separate application processes would. Secrets
are shown masked. The demo's user exists only in that stand-in, so its row
is deleted at the end unless ``keep`` is set.
"""

from __future__ import annotations

from typing import Callable

from . import migrate
from .config import create_store_engine, is_memory_sqlite, mask_url
from .core import TokenRepository
from .errors import ConfigurationError
from .model import oauthtoken
from .record import TokenRecord, mask_secret
from .scenario import run_in_new_interpreter

DEMO_EMAIL = "ada.lovelace@example.com"


def run_demo(url: str, say: Callable[[str], None], keep: bool = False) -> None:
    _require_sdk()
    engine = create_store_engine(url)
    if is_memory_sqlite(engine.url):
        raise ConfigurationError(
            "the demo runs several processes, which cannot share an in-memory "
            "database: give it a file or server URL"
        )
    from .standin import ZohoStandIn

    try:
        say(f"Database: {mask_url(engine.url)}")
        revision = migrate.upgrade(engine)
        say(f"Schema at revision {revision}, as `sqlstore upgrade` leaves it.")
        with ZohoStandIn() as zoho:
            say(f"Zoho stand-in listening on {zoho.url} (loopback only).")
            say(
                "Secrets are shown as their first four characters, their "
                "length and #fingerprint\n(the start of their SHA-256), "
                "enough to see a token change and nothing more.\n"
            )
            _lifecycle(zoho, url, engine, say, keep)
    finally:
        engine.dispose()


def _lifecycle(zoho, url, engine, say, keep) -> None:
    user_name = zoho.user_name(DEMO_EMAIL)
    step = _Stepper(zoho, url, engine, say)

    step(
        "1. A new process initializes the SDK with a grant token",
        grant_token=zoho.new_grant_token(DEMO_EMAIL),
    )
    row = step.row(user_name)
    refresh_token = row.refresh_token
    step(
        "2. Another new process starts with just the user's name",
        user_name=user_name,
    )
    step(
        "3. Another one starts with the refresh token",
        refresh_token=refresh_token,
    )
    _expire(engine, row.id)
    zoho.expire_access_tokens()
    say("   (the stored access token is now made to look expired)\n")
    step(
        "4. The next process finds an expired access token",
        user_name=user_name,
    )
    after = step.row(user_name)
    kept = "unchanged" if after.refresh_token == refresh_token else "CHANGED"
    renewed = "renewed" if after.access_token != row.access_token else "NOT renewed"
    say(f"   refresh token {kept}; access token {renewed}.")
    counts = zoho.counts
    say(
        f"\nIn all: {counts['grant']} grant exchange, {counts['refresh']} "
        f"refresh, {step.processes} processes, one row."
    )
    if not keep:
        TokenRepository(engine).delete(row.id)
        say("The demo's row was deleted (pass --keep to keep it).")


class _Stepper:
    """Runs one step in a new process and says what it cost."""

    def __init__(self, zoho, url, engine, say):
        self.zoho, self.url, self.say = zoho, url, say
        self.repository = TokenRepository(engine)
        self.processes = 0

    def __call__(self, title: str, **credentials) -> None:
        self.say(title)
        before = self.zoho.counts
        outcome = run_in_new_interpreter(
            database_url=self.url,
            zoho_url=self.zoho.url,
            client_id=self.zoho.client_id,
            client_secret=self.zoho.client_secret,
            **credentials,
        )
        self.processes += 1
        after = self.zoho.counts
        grants = after["grant"] - before["grant"]
        refreshes = after["refresh"] - before["refresh"]
        self.say(
            f"   read {outcome.records} Leads; exchanges with Zoho: "
            f"{grants} grant, {refreshes} refresh"
        )
        row = self.row(outcome.user_name)
        self.say(
            f"   row {row.id}: user {row.user_name}, access "
            f"{mask_secret(row.access_token)}, refresh "
            f"{mask_secret(row.refresh_token)}; rows stored: "
            f"{self.repository.count()}\n"
        )

    def row(self, user_name):
        return self.repository.find(TokenRecord(user_name=user_name))


def _expire(engine, token_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            oauthtoken.update()
            .where(oauthtoken.c.id == token_id)
            .values(expiry_time=1000)
        )


def _require_sdk() -> None:
    try:
        import zohocrmsdk  # noqa: F401
    except ImportError as err:
        raise ConfigurationError(
            'the demo runs Zoho\'s SDK: pip install "sqlstore[zoho]"'
        ) from err
