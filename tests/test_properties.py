"""Properties of the store over values hypothesis makes up, on every backend.

Each test builds the SDK's own ``OAuthToken`` objects with arbitrary field
values (quotes, backslashes, ``%`` and ``_``, SQL, non-ASCII and astral
characters, control characters, every kind of whitespace, empty strings,
values around and over the column limits, NUL, lone surrogates) and checks
what README.md promises: a value comes back exactly by every key, or the
save is refused with a ValueError/TypeError naming the field and leaves no
row behind; a lookup never returns another token's row.

The ``@given`` functions run inside ordinary tests, so that each backend's
``store`` fixture is made once per backend and every example starts from a
table the example empties itself. The counts of what the examples did are
printed at the end of each test (``pytest -s`` shows them).
"""

from __future__ import annotations

import collections
import re
import time
import unicodedata
import uuid

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import text
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from sqlstore.record import MAX_LENGTHS

# The fields the SDK's token has getters and setters for, besides the user
# signature and expires_in.
PLAIN = (
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "redirect_url",
    "api_domain",
)

SLOW = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

# -- strategies --------------------------------------------------------------

WHITESPACE = [
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1f",
    "\x85",
    "\xa0",
    "\u1680",
    "\u2000",
    "\u2028",
    "\u2029",
    "\u202f",
    "\u3000",
    "\u200b",
    "\ufeff",
]
SPECIAL = WHITESPACE + [
    "",
    "'",
    "''",
    '"',
    "`",
    "\\",
    "\\\\",
    "\\'",
    "%",
    "_",
    "%%",
    "\\%",
    "\\_",
    "[a-z]",
    "*",
    "?",
    "' OR '1'='1",
    "'; DROP TABLE oauthtoken; --",
    '"; DELETE FROM oauthtoken; --',
    "$$",
    "$tag$",
    "/*",
    "*/",
    "--",
    "#",
    ";",
    "%s",
    "%(id)s",
    ":id",
    "{0}",
    "é",
    "e\u0301",
    "ß",
    "İ",
    "ﬁ",
    "Σ",
    "ς",
    "東京",
    "🚀",
    "𝕏",
    "\U0010fffd",
    "\U000e0001",
    "\x01",
    "\x1a",
    "\x7f",
    "\x9f",
    "\u202e",
    "\ufffd",
    "\uffff",
    "ada@example.com:7000001",
]
POISON = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]
FILLERS = ["x", "é", "東", "🚀", " ", "'", "\\", "%"]

# NUL comes only from POISON: hypothesis favours it in plain text().
letters = st.characters(codec="utf-8", exclude_characters="\x00")
pieces = st.one_of(st.sampled_from(SPECIAL), st.text(letters, max_size=10))
short_text = st.lists(pieces, max_size=5).map("".join)


def near(limit: int, over: bool = False):
    """Strings of limit-3 to limit (or limit+1 to limit+3) characters."""
    lengths = (
        st.integers(limit + 1, limit + 3) if over else st.integers(limit - 3, limit)
    )
    return st.tuples(short_text, st.sampled_from(FILLERS), lengths).map(
        lambda t: (t[0] + t[1] * t[2])[: t[2]]
    )


poisoned = st.tuples(short_text, st.sampled_from(POISON), short_text).map(
    lambda t: t[0] + t[1] + t[2]
)


def good_values(limit: int):
    return st.one_of(st.none(), short_text, short_text, near(limit))


def bad_values(limit: int):
    return st.one_of(near(limit, over=True), poisoned)


def user_names(core):
    padded = st.tuples(
        st.sampled_from(["", " ", "\t", " \n "]),
        core,
        st.sampled_from(["", " ", "\t", "  "]),
        st.booleans(),
    ).map(lambda t: t[0] + (t[1].upper() if t[3] else t[1]) + t[2])
    return st.one_of(st.none(), padded, padded)


canonical_expiry = st.one_of(
    st.none(), st.integers(0, 2**63 - 1).map(str), st.just("1767225600000")
)
SPEC_FIELDS = ("id", *PLAIN, "user_name")


@st.composite
def token_specs(draw) -> dict[str, object]:
    """A token whose fields are all storable, or all but one (mostly)."""
    spoiled = draw(st.sampled_from([None] * 16 + list(SPEC_FIELDS)))
    spec = {}
    for name in SPEC_FIELDS:
        limit = MAX_LENGTHS[name]
        if name == spoiled:
            values = bad_values(limit)
            if name == "id":
                values = st.one_of(values, st.just(""))
        else:
            values = good_values(limit)
        if name == "user_name":
            emails = st.builds(
                "{}@{}:{}".format, short_text, short_text, st.integers(0, 10**19)
            )
            core = st.one_of(values, emails, emails)
            values = user_names(core.filter(lambda v: v is not None))
        spec[name] = draw(values)
    spec["expires_in"] = draw(canonical_expiry)
    return spec


# -- the oracle: what README.md says must happen ------------------------------


def normalize(name: str | None) -> str | None:
    """README: user names are NFC, trimmed and lower-cased; empty is none."""
    if name is None:
        return None
    return unicodedata.normalize("NFC", name).strip().lower() or None


def has_surrogate(value: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def refused_fields(spec) -> list[str]:
    """The fields whose values the store must refuse."""
    bad = []
    for name in ("id", *PLAIN, "user_name"):
        value = spec[name]
        if name == "user_name":
            value = normalize(value)
        if value is None or (value == "" and name != "id"):
            continue
        if (
            value == ""
            or len(value) > MAX_LENGTHS[name]
            or "\x00" in value
            or has_surrogate(value)
        ):
            bad.append(name)
    return bad


def names_a_field(message: str, fields) -> bool:
    return any(re.search(rf"\b{re.escape(f)}\b", message) for f in fields)


def expected_state(spec, saved_id) -> dict[str, object]:
    state = {"id": saved_id}
    for name in PLAIN:
        state[name] = spec[name] or None
    state["user_name"] = normalize(spec["user_name"])
    state["expires_in"] = spec["expires_in"] or None
    return state


# -- SDK objects --------------------------------------------------------------


def blank_token(**fields) -> OAuthToken:
    """An SDK token holding exactly the given fields, whatever they are.

    The constructor insists on some combinations; the setters do not.
    """
    token = OAuthToken(id="-")
    token.set_id(None)
    user = fields.pop("user_name", None)
    expires = fields.pop("expires_in", None)
    for name, value in fields.items():
        getattr(token, f"set_{name}")(value)
    if user is not None:
        token.set_user_signature(UserSignature(user))
    token.set_expires_in(expires)
    return token


def sdk_token(spec) -> OAuthToken:
    return blank_token(**dict(spec))


def state_of(token: OAuthToken) -> dict[str, object]:
    state = {"id": token.get_id()}
    for name in PLAIN:
        state[name] = getattr(token, f"get_{name}")()
    signature = token.get_user_signature()
    state["user_name"] = signature.get_name() if signature is not None else None
    state["expires_in"] = token.get_expires_in()
    return state


def rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM oauthtoken")).scalar()


def decoy_token() -> OAuthToken:
    """A row of another user that no lookup in these tests may return."""
    mark = uuid.uuid4().hex
    token = OAuthToken(
        client_id=f"1000.DECOY{mark[:8]}",
        client_secret=f"decoy-secret-{mark}",
        grant_token=f"1000.decoy-grant.{mark}",
        refresh_token=f"1000.decoy-refresh.{mark}",
        access_token=f"1000.decoy-access.{mark}",
        redirect_url="https://decoy.example.invalid/cb",
        user_signature=UserSignature(f"decoy-{mark}@example.invalid:1"),
        api_domain="https://decoy.example.invalid",
    )
    token.set_expires_in("4102444800000")
    return token


# -- one token: saved exactly, found by every key, or refused by name ---------


TYPICAL = {
    "id": None,
    "client_id": "1000.CLIENTAPPONE",
    "client_secret": "s" * 42,
    "refresh_token": "1000.refresh." + "a" * 64,
    "access_token": "1000.access." + "b" * 64,
    "grant_token": "1000.grant." + "c" * 64,
    "redirect_url": "https://app.example.com/oauth/callback",
    "api_domain": "https://www.zohoapis.com",
    "user_name": " Ada@Example.com:7000001 ",
    "expires_in": "4102444800000",
}
HOSTILE = {
    "id": "' OR '1'='1 %_\\",
    "client_id": "1000.'; DROP TABLE oauthtoken; --",
    "client_secret": "%\x01\u202e🚀",
    "refresh_token": "' OR '1'='1",
    "access_token": "%",
    "grant_token": "_",
    "redirect_url": "\\'\"`$$",
    "api_domain": "Zoë-東京",
    "user_name": "\tJose\u0301@EXAMPLE.com:1 ",
    "expires_in": None,
}


def test_any_token_round_trips_by_every_key_or_is_refused_by_name(store, backend):
    counts = collections.Counter()

    @settings(max_examples=80, **SLOW)
    @given(
        spec=token_specs(),
        variant=st.sampled_from(["same", "padded", "upper", "decomposed"]),
    )
    @example(spec=TYPICAL, variant="upper")
    @example(spec=HOSTILE, variant="decomposed")
    # One refusal of each kind whatever hypothesis draws, so that the
    # refusing branch is always taken.
    @example(spec={**TYPICAL, "refresh_token": "1000.\x00.nul"}, variant="same")
    @example(spec={**TYPICAL, "access_token": "x" * 5000}, variant="same")
    @example(spec={**TYPICAL, "client_id": "lone \ud800 surrogate"}, variant="same")
    def check(spec, variant):
        store.delete_tokens()
        decoy = decoy_token()
        store.save_token(decoy)
        decoy_before = state_of(store.find_token_by_id(decoy.get_id()))

        token = sdk_token(spec)
        bad = refused_fields(spec)
        note(f"refused fields expected: {bad}")
        if bad:
            with pytest.raises((ValueError, TypeError)) as refused:
                store.save_token(token)
            message = str(refused.value)
            assert names_a_field(message, bad), (bad, message)
            assert token.get_id() == spec["id"], "a refused save set an id"
            assert rows(store) == 1, "a refused save left a row"
            counts["refused"] += 1
            counts["refused:" + bad[0]] += 1
        else:
            store.save_token(token)
            saved_id = token.get_id()
            if spec["id"] is None:
                uuid.UUID(saved_id)
            else:
                assert saved_id == spec["id"]
            assert rows(store) == 2
            expected = expected_state(spec, saved_id)
            found_by = check_every_key(store, spec, expected, variant)
            counts["saved"] += 1
            for key in found_by:
                counts["found by " + key] += 1
        decoy_after = state_of(store.find_token_by_id(decoy.get_id()))
        assert decoy_after == decoy_before, "another row changed"

    check()
    print(f"{backend}: {dict(sorted(counts.items()))}")
    assert counts["saved"] >= 20 and counts["refused"] >= 3
    for key in ("user_name", "access_token", "grant_token", "refresh_token"):
        assert counts["found by " + key] > 0, key


def check_every_key(store, spec, expected, variant) -> list[str]:
    """Find the saved token by each key it carries; each finds exactly it."""
    used = ["id"]
    by_id = store.find_token_by_id(expected["id"])
    assert by_id is not None
    assert state_of(by_id) == expected

    probe = blank_token(id=expected["id"])
    assert store.find_token(probe) is probe
    assert state_of(probe) == expected

    if expected["user_name"] is not None:
        used.append("user_name")
        name = spec["user_name"]
        shown = {
            "same": name,
            "padded": f"  {name}\t",
            "upper": name.upper(),
            "decomposed": unicodedata.normalize("NFD", name),
        }
        asked = shown[variant]
        if normalize(asked) != expected["user_name"]:
            asked = name  # upper() is not undone by lower() for every letter
        probe = blank_token(
            user_name=asked,
            client_id=expected["client_id"],
            client_secret="the caller's own secret",
        )
        assert store.find_token(probe) is probe, "not found by user name"
        state = state_of(probe)
        assert state.pop("user_name") == asked
        assert state.pop("client_secret") == "the caller's own secret"
        want = dict(expected)
        del want["user_name"], want["client_secret"]
        assert state == want
        # README: a grant token the store has not seen is a new authorization.
        unseen = blank_token(user_name=asked, grant_token=f"unseen-{uuid.uuid4()}")
        assert store.find_token(unseen) is None, "an unseen grant matched"
        if expected["grant_token"] is not None:
            seen = blank_token(user_name=asked, grant_token=spec["grant_token"])
            assert store.find_token(seen) is seen, "the stored grant missed"
            assert seen.get_id() == expected["id"]

    if expected["access_token"] is not None:
        used.append("access_token")
        probe = blank_token(access_token=spec["access_token"])
        assert store.find_token(probe) is probe, "not found by access token"
        assert state_of(probe) == expected

    for key in ("grant_token", "refresh_token"):
        if expected[key] is None:
            continue
        used.append(key)
        probe = blank_token(
            client_id=expected["client_id"],
            api_domain=expected["api_domain"],
            **{key: spec[key]},
        )
        assert store.find_token(probe) is probe, f"not found by {key}"
        assert state_of(probe) == expected
        other = "1000.OTHER" if expected["client_id"] != "1000.OTHER" else "1000.X"
        other_client = blank_token(client_id=other, **{key: spec[key]})
        assert store.find_token(other_client) is None, "another client matched"
    return used


# -- many tokens in one database ----------------------------------------------

USERS = [
    "ada@example.com:1",
    "  ADA@Example.com:1\t",
    "Ada@EXAMPLE.COM:1 ",
    "bob@example.com:1",
    "o'brien@example.com:1",
    "%@example.com:1",
    "_da@example.com:1",
    "jos\u00e9@example.com:1",
    "JOSE\u0301@example.com:1",
    "",
    " ",
    None,
]
CLIENTS = ["1000.APPONE", "1000.appone", "1000.APPONE "]
DOMAINS = ["https://www.zohoapis.com", "https://www.zohoapis.eu"]
CALLER_IDS = ["a", "A", "a ", "a\t", "' OR '1'='1", "%", "_", "é", "e\u0301"]

# Mostly the first client and data centre, so that saves meet existing rows.
new_token = st.tuples(
    st.just("new"),
    st.sampled_from(USERS),
    st.sampled_from(CLIENTS[:1] * 4 + CLIENTS[1:]),
    st.sampled_from(DOMAINS[:1] * 3 + DOMAINS[1:]),
    st.booleans(),
    st.one_of(st.none(), st.sampled_from(CALLER_IDS)),
)
operations = st.one_of(
    new_token,
    new_token,
    new_token,
    st.tuples(st.just("refresh"), st.integers(0, 50)),
    st.tuples(st.just("reauthorize"), st.integers(0, 50)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("delete_missing")),
)


def key_of(row: dict) -> tuple:
    return row["user"], row["client"], row["domain"]


class Model:
    """What the table must hold after each operation, per README.md."""

    def __init__(self, store):
        self.store = store
        self.rows: dict[str, dict] = {}  # id -> fields
        self.issued: list[str] = []  # every token value ever handed out
        self.clock = 0
        self.serial = 0

    def fresh(self, kind: str) -> str:
        self.serial += 1
        value = f"1000.{kind}.{self.serial}.{uuid.uuid4().hex}"
        self.issued.append(value)
        return value

    def touch(self, row: dict) -> None:
        self.clock += 1
        row["clock"] = self.clock

    def pick(self, index: int) -> dict | None:
        if not self.rows:
            return None
        return self.rows[sorted(self.rows)[index % len(self.rows)]]

    def apply(self, op) -> str:
        return getattr(self, "op_" + op[0])(*op[1:])

    def op_new(self, user, client, domain, with_grant, caller_id) -> str:
        fields = {
            "user_name": user,
            "client_id": client,
            "api_domain": domain,
            "client_secret": f"secret-for-{client}",
            "redirect_url": "https://app.example.com/cb?a='1'&b=%25",
            "access_token": self.fresh("access"),
            "refresh_token": self.fresh("refresh"),
            "grant_token": self.fresh("grant") if with_grant else None,
            "expires_in": str(4102444800000 + self.serial),
        }
        if caller_id is not None:
            caller_id = f"{caller_id}{self.serial}"
        token = blank_token(id=caller_id, **fields)
        self.store.save_token(token)
        key = (normalize(user), client, domain or None)
        same = [
            row
            for row in self.rows.values()
            if key[0] is not None and key_of(row) == key
        ]
        assert len(same) <= 1
        if same:
            row = same[0]
            old_id = row["id"]
            row.update(
                secret=fields["client_secret"],
                redirect=fields["redirect_url"],
                access=fields["access_token"],
                refresh=fields["refresh_token"],
                expires=fields["expires_in"],
            )
            if with_grant:
                row["grant"] = fields["grant_token"]
            # An id the table does not hold does not rename the user's row:
            # the row keeps its id, and the token is given it.
            assert token.get_id() == old_id, "an update got another id"
            self.touch(row)
            return "new (updated the user's row)"
        row = {
            "id": token.get_id(),
            "user": key[0],
            "client": client,
            "domain": domain or None,
            "secret": fields["client_secret"],
            "redirect": fields["redirect_url"],
            "access": fields["access_token"],
            "refresh": fields["refresh_token"],
            "grant": fields["grant_token"],
            "expires": fields["expires_in"],
        }
        if caller_id is not None:
            assert row["id"] == caller_id
        assert row["id"] not in self.rows, "an insert reused an id"
        self.rows[row["id"]] = row
        self.touch(row)
        return "new (inserted)"

    def op_refresh(self, index) -> str:
        row = self.pick(index)
        if row is None:
            return "refresh (no row)"
        # What Zoho's refresh answer leaves: the id, a new access token.
        token = blank_token(id=row["id"], access_token=self.fresh("access"))
        token.set_expires_in(str(int(row["expires"]) + 3600000))
        self.store.save_token(token)
        row["access"] = token.get_access_token()
        row["expires"] = token.get_expires_in()
        assert token.get_id() == row["id"]
        self.touch(row)
        return "refresh"

    def op_reauthorize(self, index) -> str:
        row = self.pick(index)
        if row is None:
            return "reauthorize (no row)"
        if row["user"] is None:
            # No user name: the SDK saves again with the same refresh token.
            token = blank_token(
                client_id=row["client"],
                api_domain=row["domain"],
                refresh_token=row["refresh"],
                access_token=self.fresh("access"),
            )
            outcome = "resave by refresh token"
        else:
            # A new grant for the same user, named another way.
            token = blank_token(
                user_name=f"  {row['user'].upper()} ",
                client_id=row["client"],
                client_secret=row["secret"],
                api_domain=row["domain"],
                grant_token=self.fresh("grant"),
                refresh_token=self.fresh("refresh"),
                access_token=self.fresh("access"),
            )
            if normalize(token.get_user_signature().get_name()) != row["user"]:
                return "reauthorize (name does not survive upper())"
            outcome = "reauthorize"
        self.store.save_token(token)
        assert token.get_id() == row["id"], "a re-save did not find its row"
        for field, key in (
            ("access_token", "access"),
            ("refresh_token", "refresh"),
            ("grant_token", "grant"),
        ):
            value = getattr(token, f"get_{field}")()
            if value is not None:
                row[key] = value
        self.touch(row)
        return outcome

    def op_delete(self, index) -> str:
        row = self.pick(index)
        if row is None:
            return "delete (no row)"
        assert self.store.delete_token(row["id"]) is True
        del self.rows[row["id"]]
        return "delete"

    def op_delete_missing(self) -> str:
        assert self.store.delete_token(f"missing-{uuid.uuid4()}") is False
        return "delete missing"

    # -- checking -------------------------------------------------------

    def expected(self, row) -> dict[str, object]:
        return {
            "id": row["id"],
            "client_id": row["client"],
            "client_secret": row["secret"],
            "refresh_token": row["refresh"],
            "access_token": row["access"],
            "grant_token": row["grant"],
            "redirect_url": row["redirect"],
            "api_domain": row["domain"],
            "user_name": row["user"],
            "expires_in": row["expires"],
        }

    def verify(self, counts) -> None:
        store = self.store
        assert rows(store) == len(self.rows)
        current = set()
        for row in self.rows.values():
            want = self.expected(row)
            found = store.find_token_by_id(row["id"])
            assert found is not None and state_of(found) == want
            probe = blank_token(access_token=row["access"])
            assert store.find_token(probe) is probe
            assert probe.get_id() == row["id"], "access token found another row"
            probe = blank_token(client_id=row["client"], refresh_token=row["refresh"])
            assert store.find_token(probe) is probe
            assert probe.get_id() == row["id"], "refresh token found another row"
            current.update((row["access"], row["refresh"]))
            counts["finds"] += 3
            if row["grant"] is not None:
                current.add(row["grant"])
                probe = blank_token(client_id=row["client"], grant_token=row["grant"])
                assert store.find_token(probe) is probe
                assert probe.get_id() == row["id"], "grant token found another row"
                counts["finds"] += 1
            if row["user"] is not None:
                probe = blank_token(
                    user_name=row["user"],
                    client_id=row["client"],
                    api_domain=row["domain"],
                )
                assert store.find_token(probe) is probe
                assert probe.get_id() == row["id"], "user name found another row"
                counts["finds"] += 1
        self.verify_user_only_probes(counts)
        for value in self.issued:
            if value in current:
                continue
            field = value.split(".")[1] + "_token"
            probe = blank_token(**{field: value})
            assert store.find_token(probe) is None, "a stale token matched"
            counts["stale values"] += 1
        for probe in keyless_probes():
            before = state_of(probe)
            assert store.find_token(probe) is None, "a keyless probe matched"
            assert state_of(probe) == before, "a miss changed the token"
            counts["keyless probes"] += 1

    def verify_user_only_probes(self, counts) -> None:
        """A name alone finds that user's most recently saved row."""
        newest: dict[str, dict] = {}
        for row in self.rows.values():
            user = row["user"]
            if user is not None and (
                user not in newest or row["clock"] > newest[user]["clock"]
            ):
                newest[user] = row
        for user, row in newest.items():
            probe = blank_token(user_name=user.upper())
            if normalize(user.upper()) != user:
                probe = blank_token(user_name=user)
            assert self.store.find_token(probe) is probe
            assert probe.get_id() == row["id"], "not the user's newest row"
            counts["finds"] += 1


def keyless_probes() -> list[OAuthToken]:
    """Tokens that carry no key: they must match nothing, never a first row."""
    probes = []
    for name in ("", " ", "\t\n", "\u3000"):
        probes.append(blank_token(user_name=name))
        probes.append(
            blank_token(
                user_name=name,
                client_id=CLIENTS[0],
                client_secret="s",
                api_domain=DOMAINS[0],
                redirect_url="https://app.example.com/cb?a='1'&b=%25",
            )
        )
    probes.append(blank_token(client_id=CLIENTS[0], grant_token="", refresh_token=""))
    probes.append(blank_token(access_token="", api_domain=DOMAINS[1]))
    probes.append(blank_token(client_secret=f"secret-for-{CLIENTS[0]}"))
    return probes


def test_many_tokens_each_find_returns_its_own_row(store, backend):
    counts = collections.Counter()

    @settings(max_examples=40, **SLOW)
    @given(ops=st.lists(operations, min_size=3, max_size=20))
    def check(ops):
        store.delete_tokens()
        model = Model(store)
        for op in ops:
            counts[model.apply(op)] += 1
            note(f"{op} -> rows {sorted(model.rows)}")
        model.verify(counts)
        counts["rows at the end"] += len(model.rows)
        counts["examples"] += 1

    started = time.monotonic()
    check()
    took = time.monotonic() - started
    print(f"{backend}: {dict(sorted(counts.items()))} in {took:.1f}s")
    assert counts["new (updated the user's row)"] > 0 and counts["new (inserted)"] > 0


# -- caller-given ids -----------------------------------------------------------


def id_variants(base: str) -> list[str]:
    """The id and the spellings of it that collations or trimming conflate."""
    candidates = [
        base,
        base.upper(),
        base.lower(),
        base.swapcase(),
        base.title(),
        base + " ",
        " " + base,
        base + "  ",
        base + "\t",
        base + "\n",
        base + "\xa0",
        base + "\u3000",
        base + "\u200b",
        unicodedata.normalize("NFC", base),
        unicodedata.normalize("NFD", base),
        unicodedata.normalize("NFKC", base),
    ]
    seen, out = set(), []
    for value in candidates:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def valid_id(value: str) -> bool:
    return (
        0 < len(value) <= MAX_LENGTHS["id"]
        and "\x00" not in value
        and not has_surrogate(value)
    )


id_bases = st.one_of(
    st.sampled_from(["a", "A", "ß", "İ", "é", "e\u0301", "ﬁ", "Σ", "abc", "1"]),
    st.text(min_size=1, max_size=12),
    st.lists(pieces, min_size=1, max_size=4).map("".join),
    near(MAX_LENGTHS["id"]),
    near(MAX_LENGTHS["id"], over=True),
)


def test_caller_ids_that_collations_would_conflate_stay_distinct(store, backend):
    counts = collections.Counter()

    @settings(max_examples=25, **SLOW)
    @given(base=id_bases)
    def check(base):
        store.delete_tokens()
        variants = id_variants(base)
        good = [v for v in variants if valid_id(v)]
        for value in variants:
            if value in good:
                continue
            token = blank_token(
                id=value, user_name="refused@ids.example:1", access_token="x"
            )
            with pytest.raises((ValueError, TypeError), match=r"\bid\b"):
                store.save_token(token)
            counts["refused"] += 1
        assert rows(store) == 0
        mark = uuid.uuid4().hex
        for n, value in enumerate(good):
            token = blank_token(
                id=value,
                user_name=f"user{n}@ids.example:1",
                client_id="1000.IDS",
                access_token=f"1000.access.{n}.{mark}",
                refresh_token=f"1000.refresh.{n}.{mark}",
            )
            store.save_token(token)
            assert token.get_id() == value
        assert rows(store) == len(good), "two ids were stored as one row"
        for n, value in enumerate(good):
            found = store.find_token_by_id(value)
            assert found is not None, f"id {value!r} not found"
            assert found.get_id() == value
            assert found.get_user_signature().get_name() == f"user{n}@ids.example:1"
            probe = blank_token(id=value)
            assert store.find_token(probe) is probe
            assert probe.get_access_token() == f"1000.access.{n}.{mark}"
        if good:
            gone = good[0]
            assert store.delete_token(gone) is True
            assert store.find_token_by_id(gone) is None
            assert rows(store) == len(good) - 1, "a delete took another id's row"
            for value in good[1:]:
                assert store.find_token_by_id(value).get_id() == value
        counts["ids"] += len(good)
        counts["examples"] += 1
        counts["most variants in one example"] = max(
            counts["most variants in one example"], len(good)
        )

    check()
    print(f"{backend}: {dict(sorted(counts.items()))}")
    assert counts["ids"] > counts["examples"]


# -- expires_in -------------------------------------------------------------------

ODD_EXPIRIES = [
    "",
    "0",
    "00",
    "0123",
    " 1767225600000",
    "1767225600000 ",
    "1767225600000\n",
    "+5",
    "-5",
    "1e3",
    "12.5",
    "1_000",
    "\u0661\u0662\u0663",  # Arabic-Indic digits
    "\uff11\uff12",  # fullwidth digits
    "\u00b2",  # superscript two: str.isdigit() but not int()
    "\u2460",  # circled one
    "9" * 19,
    "9" * 20,
    "tomorrow",
]


expiries = st.one_of(
    st.none(),
    st.sampled_from(ODD_EXPIRIES),
    # More digits than int() reads (4300) without raising its own error.
    st.integers(4290, 4310).map(lambda n: "9" * n),
    st.integers(0, 2**63 - 1).map(str),
    st.integers(-(2**64), 2**64),
    st.text(alphabet="0123456789 +-_.\t\u0661\u00b2", max_size=24),
)


def test_expires_in_comes_back_as_the_same_string_or_refused_by_name(store, backend):
    counts = collections.Counter()

    @settings(max_examples=80, **SLOW)
    @given(expires=expiries)
    def check(expires):
        store.delete_tokens()
        token = blank_token(
            user_name="expiry@example.com:1",
            client_id="1000.EXPIRY",
            access_token=f"1000.access.{uuid.uuid4().hex}",
        )
        token.set_expires_in(expires)
        try:
            store.save_token(token)
        except (ValueError, TypeError) as err:
            assert re.search(r"expires_in|expiry_time", str(err)), (
                f"expires_in={expires!r} refused by a message naming no field: {err}"
            )
            assert rows(store) == 0
            counts["refused"] += 1
            return
        stored = store.find_token_by_id(token.get_id()).get_expires_in()
        if expires is None or expires == "":
            assert stored is None
        elif isinstance(expires, int):
            assert stored == str(expires)
        else:
            assert stored == expires, f"expires_in {expires!r} was kept as {stored!r}"
        counts["kept"] += 1

    check()
    print(f"{backend}: {dict(sorted(counts.items()))}")


# -- fields of the wrong type ---------------------------------------------------

WRONG_TYPES = [5, 1.5, b"bytes", ["list"], True]


@pytest.mark.parametrize("field", ["id", *PLAIN])
def test_a_field_of_the_wrong_type_is_refused_by_name(store, field):
    refused = 0
    for value in WRONG_TYPES:
        token = blank_token(
            user_name="types@example.com:1", access_token="1000.access.types"
        )
        getattr(token, f"set_{field}")(value)
        with pytest.raises(TypeError, match=rf"\b{field}\b"):
            store.save_token(token)
        refused += 1
    print(f"{field}: {refused} wrong types refused, rows={rows(store)}")
    assert rows(store) == 0


@pytest.mark.parametrize(
    "signature",
    [UserSignature(5), UserSignature(b"ada@example.com"), "ada@example.com:1"],
    ids=["name-int", "name-bytes", "plain-string"],
)
def test_a_user_signature_of_the_wrong_type_is_refused_by_name(store, signature):
    token = blank_token(access_token="1000.access.types")
    token.set_user_signature(signature)
    with pytest.raises(TypeError, match=r"user_name|user_signature"):
        store.save_token(token)
    assert rows(store) == 0


def test_values_at_every_limit_in_four_byte_characters_round_trip(store):
    """The widest row the limits allow fits every backend's row size."""
    spec = {name: "🚀" * MAX_LENGTHS[name] for name in PLAIN}
    spec["id"] = "🆔" * MAX_LENGTHS["id"]
    spec["user_name"] = "𝕦" * MAX_LENGTHS["user_name"]
    spec["expires_in"] = str(2**63 - 1)
    spec["access_token"] = "🅰" * MAX_LENGTHS["access_token"]
    spec["grant_token"] = "🅶" * MAX_LENGTHS["grant_token"]
    token = sdk_token(spec)
    store.save_token(token)
    found = store.find_token_by_id(spec["id"])
    print({name: len(value) for name, value in spec.items()})
    assert state_of(found) == expected_state(spec, spec["id"])
    for name in ("access_token", "refresh_token", "grant_token"):
        probe = blank_token(
            client_id=spec["client_id"] if name != "access_token" else None,
            **{name: spec[name]},
        )
        assert store.find_token(probe) is probe and probe.get_id() == spec["id"]
