"""A loopback stand-in for Zoho's accounts and CRM servers.

The real Zoho CRM Python SDK (``zohocrmsdk8-0``) runs its whole token
lifecycle against this server: it swaps a grant code for a refresh and an
access token, refreshes access tokens, asks the CRM who the user is (its
``email:org zgid`` user name), reads Leads and revokes refresh tokens.  Tests
and demos use it to exercise a token store without reaching Zoho.

Pointing the SDK at it::

    from sqlstore.standin import ZohoStandIn

    with ZohoStandIn() as zoho:
        token = OAuthToken(client_id=zoho.client_id,
                           client_secret=zoho.client_secret,
                           grant_token=zoho.new_grant_token("ada@example.com"))
        Initializer.initialize(environment=zoho.environment(), token=token,
                               store=my_store, resource_path=some_tmp_dir)

``environment()`` gives a ``DataCenter.Environment`` whose CRM, accounts and
file-upload URLs all point here.  Always pass ``resource_path``: the SDK
caches field metadata as JSON under ``<resource_path>/resources/`` and would
otherwise write into the current directory.

What it serves: ``POST /oauth/v2/token`` (grant and refresh exchanges),
``POST /oauth/v2/token/revoke``, and under ``/crm/v8/``: ``users``, ``org``,
``settings/fields``, ``settings/modules`` and ``Leads``.  Like CRM v8, a
Leads read must name its ``fields``.  The same CRM routes answer under the
paths of the API versions older SDKs call (``/crm/v2/``, ``/crm/v2.1/``,
``/crm/v5/`` to ``/crm/v7/``); ``crm_versions`` counts the calls each got.
Every CRM call needs a live ``Zoho-oauthtoken`` header, else Zoho's 401
INVALID_TOKEN answer.

``counts`` puts each request in exactly one bucket: a successful grant,
refresh or revoke exchange, a served CRM call ("crm"), or "rejected" (bad
client, used code, unknown or expired token, unknown path).

To see what workers do while a refresh is in flight, ``token_delay``
makes every answer of the token endpoint wait that many seconds, and
``hold_token_requests(n)`` keeps the next n token requests unanswered
(and uncounted) until ``release_held_requests()`` or ``close()``.

Everything binds to 127.0.0.1 only.  ``python -m sqlstore.standin [--port N]``
serves in the foreground and prints the client credentials and a grant code.
"""

import argparse
import http.server
import inspect
import json
import re
import secrets
import threading
import time
import urllib.parse

LOOPBACK = "127.0.0.1"
TOKEN_PATH = "/oauth/v2/token"
# The SDK builds its revoke URL as accounts_url + "/revoke".
REVOKE_PATH = TOKEN_PATH + "/revoke"
CRM_PREFIX = "/crm/v8/"
# Every CRM API version a supported SDK calls: the zcrmsdk family's v2 and
# v2.1, and the zohocrmsdk family's v5 to v8. Their answers to these few
# routes have the same shape.
CRM_PATH = re.compile(r"/crm/(v2|v2\.1|v5|v6|v7|v8)/(.*)")
COUNT_KEYS = ("grant", "refresh", "revoke", "crm", "rejected")

INVALID_TOKEN = {"code": "INVALID_TOKEN", "details": {},
                 "message": "invalid oauth token", "status": "error"}
INVALID_URL = {"code": "INVALID_URL_PATTERN", "details": {},
               "message": "Please check if the URL trying to access is a "
                          "correct one", "status": "error"}
FIELDS_MISSING = {"code": "REQUIRED_PARAM_MISSING",
                  "details": {"param_name": "fields"},
                  "message": "One of the expected parameter is missing",
                  "status": "error"}

# (api_name, data_type, system_mandatory) of the Leads layout we pretend to
# have; the SDK turns these into the type map it parses records with.
LEAD_FIELDS = (
    ("Last_Name", "text", True),
    ("First_Name", "text", False),
    ("Company", "text", True),
    ("Email", "email", False),
)

DEFAULT_LEADS = (
    {"id": "4876876000000424001", "First_Name": "Grace",
     "Last_Name": "Hopper", "Company": "Navy Labs",
     "Email": "grace@example.com"},
    {"id": "4876876000000424002", "First_Name": "Alan",
     "Last_Name": "Turing", "Company": "Bletchley Works",
     "Email": "alan@example.com"},
)


def _zoho_token():
    """A random token shaped like Zoho's: 1000.<32 hex>.<32 hex>."""
    return "1000.%s.%s" % (secrets.token_hex(16), secrets.token_hex(16))


def _numeric_id():
    """A random 19-digit id, the shape of Zoho's user and record ids."""
    return str(10 ** 18 + secrets.randbelow(9 * 10 ** 18))


class ZohoStandIn:
    """Zoho accounts + CRM on one loopback HTTP server, for one client app."""

    def __init__(self, port=0, client_id=None, client_secret=None,
                 access_token_lifetime=3600, leads=None, token_delay=0.0):
        self.client_id = client_id or "1000." + secrets.token_hex(15).upper()
        self.client_secret = client_secret or secrets.token_hex(21)
        self.access_token_lifetime = access_token_lifetime
        self.token_delay = token_delay
        self.org_zgid = str(10 ** 8 + secrets.randbelow(9 * 10 ** 8))
        self.org_id = str(10 ** 8 + secrets.randbelow(9 * 10 ** 8))
        self.leads = [dict(lead) for lead in (leads or DEFAULT_LEADS)]
        self._lock = threading.Lock()
        self._grants = {}    # grant code -> email, removed when used
        self._refresh = {}   # refresh token -> email
        self._access = {}    # access token -> (email, refresh, expiry)
        self._user_ids = {}  # email -> CRM user id
        self._counts = dict.fromkeys(COUNT_KEYS, 0)
        self._versions = {}  # CRM API version -> calls served under it
        self._log = []
        self._holds = 0     # token requests still to be held
        self._held = 0      # token requests being held now
        self._release = threading.Event()
        self._closing = False
        self._port = port
        self._server = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------

    def start(self):
        """Bind 127.0.0.1 and serve from a daemon thread; returns self."""
        if self._server is None:
            self._server = _Server((LOOPBACK, self._port), _Handler)
            self._server.standin = self
            # A short poll keeps close() quick: shutdown() waits for it.
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="zoho-standin",
                kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        return self

    def close(self):
        """Stop serving, close the socket and join the serving thread."""
        self._closing = True
        self.release_held_requests()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    # -- what callers point the SDK at -------------------------------------

    @property
    def url(self):
        """Base URL, e.g. http://127.0.0.1:PORT (the CRM API domain)."""
        if self._server is None:
            raise RuntimeError("stand-in is not running")
        return "http://%s:%d" % (LOOPBACK, self._server.server_address[1])

    @property
    def accounts_url(self):
        """The token endpoint; the SDK posts grant and refresh forms here."""
        return self.url + TOKEN_PATH

    def environment(self, data_center=None):
        """A DataCenter.Environment pointing at this server.

        data_center: the SDK's ``DataCenter`` class; by default that of
        ``zohocrmsdk``, else of ``zcrmsdk``. The 5.0 and 2.x SDKs also give
        an environment a name, which goes into the ids they make.
        """
        # Imported here so the module itself needs nothing but the stdlib.
        if data_center is None:
            data_center = _installed_data_center()
        arguments = [self.url, self.accounts_url, self.url]
        parameters = inspect.signature(data_center.Environment.__init__).parameters
        if "name" in parameters:
            arguments.append("standin")
        return data_center.Environment(*arguments)

    def issue_refresh_token(self, email):
        """A refresh token of `email`, as if the user had signed in before.

        Nothing is counted: no exchange went over the wire.
        """
        refresh = _zoho_token()
        with self._lock:
            self._refresh[refresh] = email
            self._user_ids.setdefault(email, _numeric_id())
        return refresh

    def new_grant_token(self, email):
        """A one-time grant code that logs `email` in to this org."""
        code = _zoho_token()
        with self._lock:
            self._grants[code] = email
            self._user_ids.setdefault(email, _numeric_id())
        return code

    def user_name(self, email):
        """The user name the 8.0 SDK gives `email`: "<email>:<org zgid>"."""
        return "%s:%s" % (email, self.org_zgid)

    # -- counters and server-side token state ------------------------------

    @property
    def counts(self):
        """Snapshot of handled requests, one bucket per request."""
        with self._lock:
            return dict(self._counts)

    @property
    def crm_versions(self):
        """Snapshot of CRM calls served per API version, e.g. {"v8": 5}."""
        with self._lock:
            return dict(self._versions)

    def reset_counts(self):
        with self._lock:
            self._counts = dict.fromkeys(COUNT_KEYS, 0)
            self._versions = {}
            self._log = []

    @property
    def request_log(self):
        """Snapshot of "METHOD /path" for every request (no query: it may
        hold tokens)."""
        with self._lock:
            return list(self._log)

    def expire_access_tokens(self):
        """Invalidate every access token issued so far (401 from now on)."""
        with self._lock:
            self._access.clear()

    # -- holding the token endpoint ----------------------------------------

    def hold_token_requests(self, count=1):
        """Keep the next `count` token requests waiting, unanswered."""
        with self._lock:
            self._holds += count
            self._release.clear()

    @property
    def held_token_requests(self):
        """How many token requests are being held right now."""
        with self._lock:
            return self._held

    def release_held_requests(self):
        """Let every held token request go on and be answered."""
        self._release.set()

    def _wait_before_token_answer(self):
        """False when the request is to go unanswered: the server closed."""
        with self._lock:
            hold = self._holds > 0
            if hold:
                self._holds -= 1
                self._held += 1
        if hold:
            self._release.wait()
            with self._lock:
                self._held -= 1
        if self.token_delay:
            time.sleep(self.token_delay)
        return not self._closing

    def _count(self, key, line, version=None):
        with self._lock:
            self._counts[key] += 1
            if version is not None and key == "crm":
                self._versions[version] = self._versions.get(version, 0) + 1
            self._log.append(line)

    # -- accounts server -------------------------------------------------

    def _token_endpoint(self, form):
        """Answer a grant or refresh exchange; returns (count key, body)."""
        kind = form.get("grant_type")
        if (form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret):
            return "rejected", {"error": "invalid_client"}
        if kind == "authorization_code":
            return self._exchange_grant(form.get("code"))
        if kind == "refresh_token":
            return self._exchange_refresh(form.get("refresh_token"))
        return "rejected", {"error": "unsupported_grant_type"}

    def _exchange_grant(self, code):
        with self._lock:
            email = self._grants.pop(code, None)  # pop: a code works once
            if email is None:
                return "rejected", {"error": "invalid_code"}
            refresh = _zoho_token()
            self._refresh[refresh] = email
            body = self._issue_access(email, refresh)
        body["refresh_token"] = refresh
        return "grant", body

    def _exchange_refresh(self, refresh):
        with self._lock:
            email = self._refresh.get(refresh)
            if email is None:
                # Zoho answers an unknown refresh token this way too.
                return "rejected", {"error": "invalid_code"}
            # Like Zoho, a refresh response carries no refresh_token.
            return "refresh", self._issue_access(email, refresh)

    def _issue_access(self, email, refresh):
        """New access token for `email`; caller holds the lock."""
        access = _zoho_token()
        lifetime = int(self.access_token_lifetime)
        self._access[access] = (email, refresh, time.time() + lifetime)
        # api_domain must be our own URL: the SDK looks it up in its table
        # of Zoho data centres and would switch to real Zoho on a match.
        return {"access_token": access, "api_domain": self.url,
                "token_type": "Bearer", "expires_in": lifetime}

    def _revoke(self, form):
        with self._lock:
            refresh = form.get("token")
            if self._refresh.pop(refresh, None) is None:
                return "rejected", {"status": "failure",
                                    "error": "invalid_token"}
            # Revoking a refresh token also kills what it issued.
            for access, entry in list(self._access.items()):
                if entry[1] == refresh:
                    del self._access[access]
        return "revoke", {"status": "success"}

    # -- CRM server ------------------------------------------------------

    def _caller(self, authorization):
        """Email behind a live 'Zoho-oauthtoken <access>' header, or None."""
        scheme, _, access = (authorization or "").partition(" ")
        if scheme != "Zoho-oauthtoken":
            return None
        with self._lock:
            entry = self._access.get(access.strip())
            if entry is None or entry[2] <= time.time():
                return None
            return entry[0]

    def _crm(self, route, query, authorization):
        """Answer a CRM GET; returns (count key, status, body or None)."""
        email = self._caller(authorization)
        if email is None:
            return "rejected", 401, INVALID_TOKEN
        handler = _CRM_ROUTES.get(route)
        if handler is None:
            return "rejected", 404, INVALID_URL
        status, body = handler(self, email, query)
        return ("crm" if status < 400 else "rejected"), status, body

    def _current_user(self, email, query):
        with self._lock:
            user_id = self._user_ids.setdefault(email, _numeric_id())
        user = {"id": user_id, "email": email, "status": "active",
                "full_name": email.split("@")[0].title(),
                "zuid": user_id, "confirm": True}
        info = {"per_page": 200, "count": 1, "page": 1,
                "more_records": False}
        return 200, {"users": [user], "info": info}

    def _org(self, email, query):
        org = {"id": self.org_id, "zgid": self.org_zgid,
               "company_name": "Stand-in Org", "primary_email": email,
               "country_code": "US", "time_zone": "UTC"}
        return 200, {"org": [org]}

    def _fields(self, email, query):
        if query.get("module", "").lower() != "leads":
            return 204, None
        fields = [{"api_name": name, "data_type": kind,
                   "system_mandatory": required, "custom_field": False,
                   "field_label": name.replace("_", " "),
                   "id": str(4876876000000002400 + n), "visible": True,
                   "json_type": "string"}
                  for n, (name, kind, required) in enumerate(LEAD_FIELDS)]
        return 200, {"fields": fields}

    def _modules(self, email, query):
        leads = {"api_name": "Leads", "module_name": "Leads",
                 "singular_label": "Lead", "plural_label": "Leads",
                 "id": "4876876000000002175", "api_supported": True,
                 "generated_type": "default"}
        return 200, {"modules": [leads]}

    def _leads(self, email, query):
        # Like CRM v8, a records read must name the fields it wants.
        wanted = [f for f in query.get("fields", "").split(",") if f]
        if not wanted:
            return 400, FIELDS_MISSING
        with self._lock:
            rows = [{k: v for k, v in lead.items()
                     if k == "id" or k in wanted} for lead in self.leads]
        if not rows:
            return 204, None
        info = {"per_page": 200, "count": len(rows), "page": 1,
                "sort_by": "id", "sort_order": "desc",
                "more_records": False}
        return 200, {"data": rows, "info": info}


# Path after /crm/<version>/ -> method of ZohoStandIn answering it.
_CRM_ROUTES = {
    "users": ZohoStandIn._current_user,
    "org": ZohoStandIn._org,
    "settings/fields": ZohoStandIn._fields,
    "settings/modules": ZohoStandIn._modules,
    "Leads": ZohoStandIn._leads,
}


def _installed_data_center():
    try:
        from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
    except ImportError:
        from zcrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
    return DataCenter


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    standin = None


class _Handler(http.server.BaseHTTPRequestHandler):
    # A client that connects and stays silent must not pin a thread forever.
    timeout = 10
    server_version = "ZohoStandIn/1.0"

    def log_message(self, format, *args):
        """Silence per-request stderr lines; request_log keeps the paths."""

    def do_POST(self):
        standin = self.server.standin
        path = urllib.parse.urlsplit(self.path).path
        form = self._form()
        if path == TOKEN_PATH:
            if not standin._wait_before_token_answer():
                return
            key, body = standin._token_endpoint(form)
        elif path == REVOKE_PATH:
            key, body = standin._revoke(form)
        else:
            key, body = "rejected", INVALID_URL
        standin._count(key, "POST " + path)
        # Zoho's accounts server reports OAuth errors in the body with 200;
        # the SDK reads only the body.
        self._reply(200 if path in (TOKEN_PATH, REVOKE_PATH) else 404, body)

    def do_GET(self):
        standin = self.server.standin
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        crm_path = CRM_PATH.fullmatch(parts.path)
        version = None
        if crm_path is not None:
            version, route = crm_path.group(1), crm_path.group(2).strip("/")
            key, status, body = standin._crm(
                route, query, self.headers.get("Authorization"))
        else:
            key, status, body = "rejected", 404, INVALID_URL
        standin._count(key, "GET " + parts.path, version)
        self._reply(status, body)

    def _form(self):
        """Form fields from the body, plus query ones (revoke may use it)."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        query = urllib.parse.urlsplit(self.path).query
        form = dict(urllib.parse.parse_qsl(query))
        form.update(urllib.parse.parse_qsl(raw))
        return form

    def _reply(self, status, body):
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        self.send_response(status)
        if body is not None:
            # The SDK picks its response parser from this header.
            self.send_header("Content-Type",
                             "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        try:
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client died waiting, as the tests sometimes make it


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sqlstore.standin",
        description="Serve a Zoho accounts + CRM stand-in on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0,
                        help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--email", default="demo@example.com",
                        help="user the printed grant code logs in")
    args = parser.parse_args(argv)
    with ZohoStandIn(port=args.port) as zoho:
        # Ctrl-C is a clean stop from the first line printed on: a caller
        # that has read what it needs may interrupt before the last one.
        try:
            print("Zoho stand-in on", zoho.url)
            print("  accounts_url: ", zoho.accounts_url)
            print("  client_id:    ", zoho.client_id)
            print("  client_secret:", zoho.client_secret)
            print("  grant_token:  ", zoho.new_grant_token(args.email))
            print("  user name:    ", zoho.user_name(args.email))
            print("Environment: DataCenter.Environment(%r, %r, %r)"
                  % (zoho.url, zoho.accounts_url, zoho.url))
            print("Ctrl-C to stop.", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
