"""The stores under test, each behind the same small interface.

A subject turns (operation, token spec) into a zero-argument call, which
the runner times alone, and a check of the call's result, which it runs
untimed. Building the SDK's probe token happens before the clock starts:
it is the caller's cost, not the store's.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.db_store import DBStore
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from . import data, databases, settings

# The check of a result: None when right, else what was wrong.
Check = Callable[[object], Optional[str]]
Prepared = Tuple[Callable[[], object], Check]


class Subject:
    """One store on one backend.

    key: a short unique name, e.g. ``ours-postgresql``.
    store: the store's name in the tables.
    backend: where it keeps tokens; stores are compared with that
        backend's floor.
    cap_key: the name its size cap goes by in ``Plan.caps``.
    """

    key = ""
    store = ""
    backend = ""
    cap_key = ""
    is_floor = False
    is_ours = False
    # Our store with encryption keys: checked like ours, reported beside it.
    is_encrypted = False

    def fill(self, specs: List[data.TokenSpec]) -> None:
        raise NotImplementedError

    def prepare(self, operation: str, spec: data.TokenSpec) -> Prepared:
        raise NotImplementedError

    def close(self) -> None:
        pass


# -- stores the SDK calls -----------------------------------------------------


class SdkFacing(Subject):
    """A TokenStore called with real OAuthToken objects, as the SDK does."""

    sdk_ids = False

    def __init__(self, token_store):
        self.token_store = token_store

    def prepare(self, operation: str, spec: data.TokenSpec) -> Prepared:
        return getattr(self, f"_prepare_{operation}")(spec)

    def _expected_id(self, spec: data.TokenSpec) -> str:
        return data.expected_id(spec, self.sdk_ids)

    def _prepare_find_user(self, spec):
        probe = OAuthToken(user_signature=UserSignature(spec.user_name))
        return self._find(probe, spec)

    def _prepare_find_access(self, spec):
        probe = OAuthToken(access_token=spec.access_token)
        return self._find(probe, spec)

    def _prepare_find_refresh(self, spec):
        probe = OAuthToken(
            client_id=data.CLIENT_ID,
            client_secret=data.CLIENT_SECRET,
            refresh_token=spec.refresh_token,
        )
        return self._find(probe, spec)

    def _prepare_find_id(self, spec):
        token_id = self._expected_id(spec)
        call = lambda: self.token_store.find_token_by_id(token_id)  # noqa: E731
        return call, lambda found: self._mismatch(found, spec)

    def _find(self, probe, spec) -> Prepared:
        call = lambda: self.token_store.find_token(probe)  # noqa: E731
        return call, lambda found: self._mismatch(found, spec)

    def _prepare_save_update(self, spec):
        # A refresh: the token found earlier, with a new access token.
        token = _full_token(spec, token_id=self._expected_id(spec))
        call = lambda: self.token_store.save_token(token)  # noqa: E731
        return call, lambda _: self._read_back(spec, self._expected_id(spec))

    def _prepare_save_insert(self, spec):
        # A grant just exchanged: a new user, no id yet.
        token = _full_token(spec, token_id=None, grant=True)
        call = lambda: self.token_store.save_token(token)  # noqa: E731
        return call, lambda _: self._read_back(spec, token.get_id())

    def _read_back(self, spec, token_id) -> Optional[str]:
        if not token_id:
            return "the saved token got no id"
        probe = OAuthToken(user_signature=UserSignature(spec.user_name))
        return self._mismatch(self.token_store.find_token(probe), spec, token_id)

    def _mismatch(self, found, spec, token_id=None) -> Optional[str]:
        if found is None:
            return "found nothing"
        signature = found.get_user_signature()
        name = signature.get_name() if signature is not None else None
        if name != spec.user_name:
            return "another user's token"
        if found.get_access_token() != spec.access_token:
            return "a stale access token"
        if found.get_id() != (token_id or self._expected_id(spec)):
            return "the wrong id"
        return None


def _full_token(spec, token_id, grant=False) -> OAuthToken:
    token = OAuthToken(
        client_id=data.CLIENT_ID,
        client_secret=data.CLIENT_SECRET,
        grant_token=spec.grant_token if grant else None,
        refresh_token=None if grant else spec.refresh_token,
        redirect_url=data.REDIRECT_URL,
        id=token_id,
        api_domain=data.API_DOMAIN,
    )
    if grant:
        token.set_refresh_token(spec.refresh_token)
    token.set_access_token(spec.access_token)
    token.set_expires_in(str(spec.expiry))
    token.set_user_signature(UserSignature(spec.user_name))
    return token


class OursSubject(SdkFacing):
    """sqlstore.SqlAlchemyStore on one backend, schema from the migrations."""

    store = "sqlstore"
    is_ours = True

    def __init__(self, url: str, backend: str, key: str):
        from sqlstore import SqlAlchemyStore

        super().__init__(SqlAlchemyStore(url))
        self.url = url
        self.backend = backend
        self.key = self.cap_key = key

    def fill(self, specs):
        from sqlstore.model import oauthtoken

        databases.fill_table(self.token_store.engine, oauthtoken, specs)

    def close(self):
        close = getattr(self.token_store, "close", None)
        if close is not None:
            close()
        else:
            self.token_store.engine.dispose()


class OursEncryptedSubject(OursSubject):
    """Our store with an encryption key, in a table of its own.

    plain_key: the subject of our store without keys on the same backend,
    which the report sets it against.
    """

    store = "sqlstore, encrypted"
    is_ours = False
    is_encrypted = True

    def __init__(self, url: str, backend: str, plain_key: str):
        from sqlstore import SqlAlchemyStore, crypto

        # A key of this run's own: the benchmark's tokens are made up.
        store = SqlAlchemyStore(url, encryption_keys=[crypto.generate_key()])
        SdkFacing.__init__(self, store)
        self.cipher = store.repository.cipher
        self.url = url
        self.backend = backend
        self.plain_key = plain_key
        self.key = self.cap_key = f"{plain_key}-encrypted"

    def fill(self, specs):
        from sqlstore.model import oauthtoken

        databases.fill_table(
            self.token_store.engine, oauthtoken, specs, cipher=self.cipher
        )


class SdkDbSubject(SdkFacing):
    """The SDK's DBStore (mysql-connector, a connection per call)."""

    key = cap_key = "sdk-db"
    store = "SDK DBStore"
    backend = "MariaDB"
    sdk_ids = True

    def __init__(self):
        super().__init__(
            DBStore(
                host=settings.HOST,
                database_name=settings.DATABASE,
                user_name=settings.MYSQL_USER,
                password="",
                port_number=str(settings.MYSQL_PORT),
                table_name=settings.SDK_TABLE,
            )
        )

    def fill(self, specs):
        databases.fill_sdk_table(specs)


class SdkFileSubject(SdkFacing):
    """The SDK's FileStore on a CSV file in the run's temporary directory."""

    key = cap_key = "sdk-file"
    store = "SDK FileStore"
    backend = "CSV file"
    sdk_ids = True

    def __init__(self, path: str):
        super().__init__(FileStore(path))
        self.path = path

    def fill(self, specs):
        databases.append_csv(self.path, specs)
