"""The real Zoho SDK runs its token lifecycle against sqlstore.standin.

No mocks: every test starts a stand-in on 127.0.0.1 and drives the
unmodified zohocrmsdk (or plain requests) over real HTTP.
"""

import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from sqlstore.standin import INVALID_TOKEN, ZohoStandIn
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import (
    TokenStore)
from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.record import (
    APIException, GetRecordsParam, RecordOperations, ResponseWrapper)
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

ADA = "ada@example.com"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# OAuthToken getter/setter pairs a store must keep (user name aside).
TOKEN_FIELDS = ("client_id", "client_secret", "refresh_token",
                "access_token", "grant_token", "expires_in",
                "redirect_url", "api_domain")


class DictStore(TokenStore):
    """Just enough of a TokenStore for the SDK: rows in a dict by id."""

    def __init__(self):
        self.rows = {}

    def find_token(self, token):
        for token_id, row in self.rows.items():
            if self._matches(token, token_id, row):
                self._fill(token, token_id, row)
                return token
        return None

    def save_token(self, token):
        token_id = token.get_id()
        if token_id is None:
            found = self.find_token(token)
            token_id = found.get_id() if found else str(len(self.rows) + 1)
            token.set_id(token_id)
        signature = token.get_user_signature()
        row = {f: getattr(token, "get_" + f)() for f in TOKEN_FIELDS}
        row["user_name"] = signature.get_name() if signature else None
        self.rows[token_id] = row

    def delete_token(self, id):
        self.rows.pop(id, None)

    def get_tokens(self):
        return [self.find_token_by_id(token_id) for token_id in self.rows]

    def delete_tokens(self):
        self.rows.clear()

    def find_token_by_id(self, id):
        if id not in self.rows:
            return None
        token = OAuthToken(id=id)
        self._fill(token, id, self.rows[id])
        return token

    @staticmethod
    def _matches(token, token_id, row):
        # The SDK's revoke() looks a token up by id alone, so match that
        # first; otherwise by user name, then by grant or refresh token.
        if token.get_id() is not None:
            return token.get_id() == token_id
        if token.get_user_signature() is not None:
            return token.get_user_signature().get_name() == row["user_name"]
        return any(getattr(token, "get_" + f)() not in (None, "")
                   and getattr(token, "get_" + f)() == row[f]
                   for f in ("grant_token", "refresh_token"))

    @staticmethod
    def _fill(token, token_id, row):
        """Copy stored values into the fields the caller left empty."""
        if token.get_id() is None:
            token.set_id(token_id)
        if token.get_user_signature() is None and row["user_name"]:
            token.set_user_signature(UserSignature(row["user_name"]))
        for field in TOKEN_FIELDS:
            if getattr(token, "get_" + field)() is None:
                getattr(token, "set_" + field)(row[field])


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    # requests honours proxy variables; keep every request on loopback.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def zoho():
    with ZohoStandIn() as standin:
        yield standin


def initialize(zoho, store, resource_path, **token_args):
    """Initialize the SDK against the stand-in; returns the OAuthToken."""
    token = OAuthToken(client_id=token_args.pop("client_id", zoho.client_id),
                       client_secret=token_args.pop("client_secret",
                                                    zoho.client_secret),
                       **token_args)
    Initializer.initialize(environment=zoho.environment(), token=token,
                           store=store, resource_path=str(resource_path))
    return token


def read_leads():
    params = ParameterMap()
    params.add(GetRecordsParam.fields, "Last_Name,Company,Email")
    return RecordOperations("Leads").get_records(params)


def lead_names(response):
    body = response.get_object()
    assert isinstance(body, ResponseWrapper), vars(body)
    return sorted(r.get_key_value("Last_Name") for r in body.get_data())


def test_grant_exchange_names_user_and_reads_leads(zoho, tmp_path):
    store = DictStore()
    token = initialize(zoho, store, tmp_path,
                       grant_token=zoho.new_grant_token(ADA))
    print("after initialize:", zoho.counts, zoho.request_log)
    assert zoho.counts == {"grant": 1, "refresh": 0, "revoke": 0,
                           "crm": 2, "rejected": 0}
    [row] = store.rows.values()
    assert row["user_name"] == zoho.user_name(ADA)
    assert row["user_name"] == "%s:%s" % (ADA, zoho.org_zgid)
    assert row["refresh_token"].startswith("1000.")
    assert row["access_token"] == token.get_access_token()

    response = read_leads()
    print("after read:", zoho.counts, zoho.request_log)
    assert response.get_status_code() == 200
    assert lead_names(response) == ["Hopper", "Turing"]
    record = response.get_object().get_data()[0]
    assert record.get_key_value("Company") == zoho.leads[0]["Company"]
    assert record.get_key_value("Email") == zoho.leads[0]["Email"]
    assert zoho.counts["grant"] == 1 and zoho.counts["rejected"] == 0
    # The field metadata the SDK fetched is cached under resource_path.
    assert list((tmp_path / "resources").glob("*.json"))


def test_refresh_token_with_empty_store_uses_one_refresh(zoho, tmp_path):
    first = initialize(zoho, DictStore(), tmp_path,
                       grant_token=zoho.new_grant_token(ADA))
    refresh = first.get_refresh_token()
    zoho.reset_counts()

    store = DictStore()
    second = initialize(zoho, store, tmp_path, refresh_token=refresh)
    response = read_leads()
    print("refresh-token initialize + read:", zoho.counts)
    assert zoho.counts["refresh"] == 1
    assert zoho.counts["grant"] == 0
    assert zoho.counts["rejected"] == 0
    assert lead_names(response) == ["Hopper", "Turing"]
    assert second.get_access_token() != first.get_access_token()
    # A refresh answer has no refresh_token: the SDK keeps the old one.
    [row] = store.rows.values()
    assert row["refresh_token"] == refresh
    assert row["user_name"] == zoho.user_name(ADA)


def test_expired_access_token_is_rejected(zoho, tmp_path):
    initialize(zoho, DictStore(), tmp_path,
               grant_token=zoho.new_grant_token(ADA))
    assert read_leads().get_status_code() == 200
    zoho.reset_counts()

    zoho.expire_access_tokens()
    response = read_leads()
    print("read with expired access token:", zoho.counts)
    assert response.get_status_code() == 401
    error = response.get_object()
    assert isinstance(error, APIException)
    assert error.get_code().get_value() == "INVALID_TOKEN"
    assert zoho.counts["rejected"] == 1
    assert zoho.counts["crm"] == 0
    # The SDK trusts its own expiry time and does not refresh on a 401.
    assert zoho.counts["refresh"] == 0


def test_short_lifetime_makes_sdk_refresh(zoho, tmp_path):
    # The SDK refreshes once fewer than 5 s of a token's life remain.
    zoho.access_token_lifetime = 3
    store = DictStore()
    token = initialize(zoho, store, tmp_path,
                       grant_token=zoho.new_grant_token(ADA))
    issued = token.get_access_token()
    response = read_leads()
    print("short-lived tokens:", zoho.counts)
    assert lead_names(response) == ["Hopper", "Turing"]
    assert zoho.counts["grant"] == 1
    assert zoho.counts["refresh"] >= 1
    assert zoho.counts["rejected"] == 0
    [row] = store.rows.values()
    assert row["access_token"] != issued  # the refresh was saved


def test_grant_code_is_single_use(zoho, tmp_path):
    code = zoho.new_grant_token(ADA)
    initialize(zoho, DictStore(), tmp_path, grant_token=code)
    with pytest.raises(SDKException, match="invalid_code"):
        initialize(zoho, DictStore(), tmp_path, grant_token=code)
    print("grant code used twice:", zoho.counts)
    assert zoho.counts["grant"] == 1
    assert zoho.counts["rejected"] == 1


def test_wrong_client_secret_is_refused(zoho, tmp_path):
    store = DictStore()
    with pytest.raises(SDKException, match="invalid_client"):
        initialize(zoho, store, tmp_path, client_secret="not-the-secret",
                   grant_token=zoho.new_grant_token(ADA))
    print("wrong secret:", zoho.counts)
    assert zoho.counts["grant"] == 0
    assert zoho.counts["rejected"] == 1
    assert store.rows == {}


def test_revoke_kills_refresh_and_access_tokens(zoho, tmp_path):
    store = DictStore()
    token = initialize(zoho, store, tmp_path,
                       grant_token=zoho.new_grant_token(ADA))
    refresh = token.get_refresh_token()
    # Read once so field metadata is cached: on a cold cache a 401 on the
    # metadata fetch is raised as SDKException instead of returned.
    assert read_leads().get_status_code() == 200
    zoho.reset_counts()
    assert token.revoke(token.get_id()) is True
    print("revoke:", zoho.counts, zoho.request_log)
    assert zoho.counts["revoke"] == 1
    assert zoho.request_log == ["POST /oauth/v2/token/revoke"]
    assert read_leads().get_status_code() == 401
    with pytest.raises(SDKException, match="invalid_code"):
        initialize(zoho, DictStore(), tmp_path, refresh_token=refresh)


def test_wire_format(zoho):
    form = {"grant_type": "authorization_code", "client_id": zoho.client_id,
            "client_secret": zoho.client_secret,
            "code": zoho.new_grant_token(ADA)}
    grant = requests.post(zoho.accounts_url, data=form, timeout=5).json()
    assert set(grant) == {"access_token", "refresh_token", "api_domain",
                          "token_type", "expires_in"}
    assert grant["api_domain"] == zoho.url
    assert grant["expires_in"] == zoho.access_token_lifetime
    for value in (grant["access_token"], grant["refresh_token"]):
        prefix, first, second = value.split(".")
        assert prefix == "1000" and len(first) == len(second) == 32
        int(first + second, 16)

    form = {"grant_type": "refresh_token", "client_id": zoho.client_id,
            "client_secret": zoho.client_secret,
            "refresh_token": grant["refresh_token"]}
    refreshed = requests.post(zoho.accounts_url, data=form, timeout=5).json()
    assert "refresh_token" not in refreshed
    assert refreshed["access_token"] != grant["access_token"]

    users = zoho.url + "/crm/v8/users?type=CurrentUser"
    ok = requests.get(users, timeout=5, headers={
        "Authorization": "Zoho-oauthtoken " + refreshed["access_token"]})
    assert ok.json()["users"][0]["email"] == ADA
    bad = requests.get(users, timeout=5, headers={
        "Authorization": "Zoho-oauthtoken 1000.stale.token"})
    assert bad.status_code == 401 and bad.json() == INVALID_TOKEN
    assert zoho.counts == {"grant": 1, "refresh": 1, "revoke": 0,
                           "crm": 1, "rejected": 1}


def test_close_frees_port_and_thread():
    standin = ZohoStandIn().start()
    port = int(standin.url.rsplit(":", 1)[1])
    thread = standin._thread
    standin.close()
    assert not thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_command_line_prints_credentials_and_serves():
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlstore.standin", "--email", ADA],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        lines = [proc.stdout.readline() for _ in range(6)]
        url = lines[0].split()[-1]
        assert url.startswith("http://127.0.0.1:")
        printed = dict(line.split(":", 1) for line in lines[1:6])
        code = printed["  grant_token"].strip()
        form = {"grant_type": "authorization_code", "code": code,
                "client_id": printed["  client_id"].strip(),
                "client_secret": printed["  client_secret"].strip()}
        answer = requests.post(url + "/oauth/v2/token", data=form,
                               timeout=5).json()
        assert answer["access_token"].startswith("1000.")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
