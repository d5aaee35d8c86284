"""The access decision for every (scope, Authorization) case, with and without keys."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest

from serving.access import guard as guard_module
from serving.access.guard import (
    ANONYMOUS,
    INVALID,
    Decision,
    Guard,
    Reason,
    bearer_token,
)
from serving.access.keys import KeyTable, digest_of, parse_keys
from serving.access.scopes import Scope

INFER_KEY = "infer-8a1c5b0e3d9f4e21a7c6"
ADMIN_KEY = "admin-5f0e9c2b7a4d4c18b3e1"
LIMITED_KEY = "limited-0c3e7b9a1f2d4e6a8b5c"
KEYS = f"""
[[keys]]
name = "client"
key = "{INFER_KEY}"
scopes = ["infer", "feedback"]

[[keys]]
name = "ops"
sha256 = "{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}"
scopes = ["admin", "read"]

[[keys]]
name = "limited"
key = "{LIMITED_KEY}"
scopes = ["infer"]
rate_per_s = 2
burst = 2
""".encode()
SECRETS = (INFER_KEY, ADMIN_KEY, LIMITED_KEY)
GRANTED = (Scope.READ, Scope.INFER, Scope.FEEDBACK, Scope.ADMIN)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table() -> KeyTable:
    return parse_keys(KEYS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def bearer(key: str) -> bytes:
    return f"Bearer {key}".encode()


def assert_refused(decision: Decision, status: int, reason: Reason, name: str) -> None:
    assert (decision.allowed, decision.status, decision.reason, decision.key_name) == (
        False,
        status,
        reason,
        name,
    )
    assert decision.message


# ---------------------------------------------------------------- no keys file
def test_without_keys_the_admin_api_is_off_and_says_how_to_turn_it_on() -> None:
    guard = Guard(None)
    for authorization in (None, bearer(ADMIN_KEY), b"Basic eDp5"):
        decision = guard.check(Scope.ADMIN, authorization)
        assert_refused(decision, 403, Reason.ADMIN_OFF, ANONYMOUS)
        assert "SERVING_KEYS_FILE" in decision.message
        assert "admin" in decision.message


def test_without_keys_everything_else_is_open_and_authorization_is_ignored() -> None:
    guard = Guard(None)
    for scope in (Scope.OPEN, Scope.READ, Scope.INFER, Scope.FEEDBACK, Scope.UNROUTED):
        for authorization in (None, bearer("anything"), b"garbage"):
            decision = guard.check(scope, authorization)
            assert decision.allowed
            assert decision.key_name == ANONYMOUS


def test_require_keys_without_a_table_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="require_keys needs a keys file"):
        Guard(None, require_keys=True)


# ---------------------------------------------------------------- keys, anonymous callers
def test_anonymous_callers_with_keys(table: KeyTable) -> None:
    guard = Guard(table)
    assert guard.check(Scope.OPEN, None).allowed
    for scope in (Scope.READ, Scope.INFER, Scope.FEEDBACK, Scope.UNROUTED):
        assert guard.check(scope, None) == Decision(True, 200, Reason.ALLOWED, ANONYMOUS)
    decision = guard.check(Scope.ADMIN, None)
    assert_refused(decision, 401, Reason.MISSING_KEY, ANONYMOUS)
    assert decision.headers == ((b"www-authenticate", b"Bearer"),)
    assert "admin scope" in decision.message


def test_require_keys_closes_everything_but_open_routes(table: KeyTable) -> None:
    guard = Guard(table, require_keys=True)
    assert guard.check(Scope.OPEN, None).allowed
    for scope in (Scope.READ, Scope.INFER, Scope.FEEDBACK, Scope.ADMIN, Scope.UNROUTED):
        decision = guard.check(scope, None)
        assert_refused(decision, 401, Reason.MISSING_KEY, ANONYMOUS)
        assert decision.headers == ((b"www-authenticate", b"Bearer"),)
    assert "infer scope" in guard.check(Scope.INFER, None).message


# ---------------------------------------------------------------- presented keys
@pytest.mark.parametrize("require_keys", [False, True])
def test_each_key_gets_exactly_its_scopes(table: KeyTable, require_keys: bool) -> None:
    guard = Guard(table, require_keys=require_keys)
    granted = {
        "client": (INFER_KEY, {Scope.INFER, Scope.FEEDBACK}),
        "ops": (ADMIN_KEY, {Scope.ADMIN, Scope.READ}),
    }
    for name, (key, scopes) in granted.items():
        for scope in GRANTED:
            decision = guard.check(scope, bearer(key))
            if scope in scopes:
                assert decision == Decision(True, 200, Reason.ALLOWED, name)
            else:
                # The same 403 whether or not anonymous callers may use the route.
                assert_refused(decision, 403, Reason.FORBIDDEN, name)
                assert f"does not have the {scope} scope" in decision.message
                (challenge,) = decision.headers
                assert challenge[0] == b"www-authenticate"
                assert b'error="insufficient_scope"' in challenge[1]
        # Unrouted paths take any valid key, so a mistyped path still gets the app's 404.
        assert guard.check(Scope.UNROUTED, bearer(key)).key_name == name
        assert guard.check(Scope.OPEN, bearer(key)).allowed


@pytest.mark.parametrize("scope", [Scope.READ, Scope.INFER, Scope.ADMIN, Scope.UNROUTED])
def test_an_unknown_key_is_401_even_where_anonymous_callers_pass(
    table: KeyTable, scope: Scope
) -> None:
    decision = Guard(table).check(scope, bearer("not-a-key-of-this-service"))
    assert_refused(decision, 401, Reason.INVALID_KEY, INVALID)
    assert decision.headers == ((b"www-authenticate", b'Bearer error="invalid_token"'),)


@pytest.mark.parametrize(
    "authorization",
    [
        f"bearer {INFER_KEY}",
        f"BEARER {INFER_KEY}",
        f"  Bearer   {INFER_KEY}  ",
        f"Bearer\t{INFER_KEY}",
        f"Bearer {INFER_KEY}\r\n",
    ],
)
def test_bearer_parsing_is_tolerant(table: KeyTable, authorization: str) -> None:
    guard = Guard(table, require_keys=True)
    assert guard.check(Scope.INFER, authorization.encode()).key_name == "client"
    assert guard.check(Scope.INFER, authorization).key_name == "client"  # gRPC metadata: str


@pytest.mark.parametrize(
    "authorization",
    [
        b"",
        b"Bearer",
        b"Bearer ",
        INFER_KEY.encode(),  # no scheme
        b"Basic " + INFER_KEY.encode(),
        b"Token " + INFER_KEY.encode(),
        b"Bearer" + INFER_KEY.encode(),  # no space
        b"Bearer " + INFER_KEY.encode() + b" extra",
        b"Bearer " + INFER_KEY.encode() + b", Bearer " + ADMIN_KEY.encode(),  # two headers joined
    ],
)
def test_other_forms_are_refused_as_malformed(table: KeyTable, authorization: bytes) -> None:
    decision = Guard(table).check(Scope.INFER, authorization)
    assert_refused(decision, 401, Reason.INVALID_KEY, INVALID)
    assert decision.headers == ((b"www-authenticate", b'Bearer error="invalid_request"'),)


def test_a_str_that_is_not_latin1_is_malformed() -> None:
    assert bearer_token("Bearer caf\u20ac") is None


def test_check_target_reads_the_scope_from_method_and_target(table: KeyTable) -> None:
    guard = Guard(table)
    assert guard.check_target(b"POST", b"/v2/repository/models/mnist/unload", None).status == 401
    assert guard.check_target(b"POST", b"/v1/predict", None).allowed
    assert guard.check_target(b"GET", b"/healthz", None).allowed
    ops = guard.check_target(b"POST", b"/v2/%72epository/index", bearer(ADMIN_KEY))
    assert ops.key_name == "ops"


# ---------------------------------------------------------------- rate limits
def test_a_key_over_its_rate_gets_429_with_retry_after(table: KeyTable, clock: Clock) -> None:
    guard = Guard(table, clock=clock)
    assert guard.check(Scope.INFER, bearer(LIMITED_KEY)).allowed
    assert guard.check(Scope.INFER, bearer(LIMITED_KEY)).allowed  # burst 2
    decision = guard.check(Scope.INFER, bearer(LIMITED_KEY))
    assert_refused(decision, 429, Reason.RATE_LIMITED, "limited")
    assert decision.headers == ((b"retry-after", b"1"),)  # 0.5 s, rounded up
    assert "per worker" in decision.message
    clock.now += 0.5
    assert guard.check(Scope.INFER, bearer(LIMITED_KEY)).allowed
    # Other keys and anonymous callers are not limited by it.
    assert guard.check(Scope.INFER, bearer(INFER_KEY)).allowed
    assert guard.check(Scope.INFER, None).allowed


def test_retry_after_is_whole_seconds_rounded_up(clock: Clock) -> None:
    slow = parse_keys(
        f'[[keys]]\nname = "slow"\nkey = "{LIMITED_KEY}"\nscopes = ["read"]\n'
        f"rate_per_s = 0.4\n".encode()
    )
    guard = Guard(slow, clock=clock)
    assert guard.check(Scope.READ, bearer(LIMITED_KEY)).allowed
    assert guard.check(Scope.READ, bearer(LIMITED_KEY)).headers == ((b"retry-after", b"3"),)
    clock.now += 2.2
    assert guard.check(Scope.READ, bearer(LIMITED_KEY)).headers == ((b"retry-after", b"1"),)


def test_refusals_before_the_bucket_take_no_token(table: KeyTable, clock: Clock) -> None:
    guard = Guard(table, clock=clock)
    for _ in range(5):
        assert guard.check(Scope.ADMIN, bearer(LIMITED_KEY)).status == 403
    assert guard.check(Scope.INFER, bearer(LIMITED_KEY)).allowed
    assert guard.check(Scope.INFER, bearer(LIMITED_KEY)).allowed


def test_a_new_table_keeps_the_buckets_of_keys_that_stay(table: KeyTable, clock: Clock) -> None:
    guard = Guard(table, clock=clock)
    guard.check(Scope.INFER, bearer(LIMITED_KEY))
    guard.check(Scope.INFER, bearer(LIMITED_KEY))
    bucket = guard.bucket("limited")
    assert bucket is not None
    # Same key, new scopes: the emptied bucket stays empty (a reload is no refill).
    more = b'scopes = ["infer", "read"]\nrate'
    rotated = parse_keys(KEYS.replace(b'scopes = ["infer"]\nrate', more))
    guard.use(rotated)
    assert guard.bucket("limited") is bucket
    assert guard.check(Scope.READ, bearer(LIMITED_KEY)).status == 429
    # Removed, then back: a fresh bucket.
    guard.use(parse_keys(KEYS.split(b'[[keys]]\nname = "limited"')[0]))
    assert guard.bucket("limited") is None
    assert guard.check(Scope.INFER, bearer(LIMITED_KEY)).status == 401
    guard.use(table)
    assert guard.bucket("limited") is not bucket
    assert guard.check(Scope.INFER, bearer(LIMITED_KEY)).allowed


# ---------------------------------------------------------------- no key material anywhere
def every_decision(table: KeyTable) -> Iterator[Decision]:
    clock = Clock()
    for require_keys in (False, True):
        guard = Guard(table, require_keys=require_keys, clock=clock)
        for scope in Scope:
            for key in (*SECRETS, "wrong-" + INFER_KEY):
                for authorization in (bearer(key), f"Basic {key}".encode(), f"Bearer {key} x"):
                    for _ in range(3):  # into the rate limit
                        yield guard.check(scope, authorization)


def test_no_decision_carries_the_presented_key(table: KeyTable) -> None:
    for decision in every_decision(table):
        text = repr(dataclasses.astuple(decision))
        for key in (*SECRETS, "wrong-" + INFER_KEY):
            assert key not in text
            assert key[-12:] not in text
        assert decision.key_name in {"client", "ops", "limited", ANONYMOUS, INVALID}


def test_keys_are_compared_as_digests_with_compare_digest(
    table: KeyTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module the guard calls it from
    guard = Guard(table)
    assert guard.check(Scope.INFER, bearer(INFER_KEY)).allowed
    assert compared == [(hashlib.sha256(INFER_KEY.encode()).digest(),) * 2]


def test_a_verified_key_is_hashed_once_per_table(
    table: KeyTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SHA-256 is the guard's largest cost at c=1: a key that verified is found by a dict
    lookup on its next requests, until a reload swaps the table."""
    hashed: list[bytes] = []
    real = digest_of

    def counting(token: bytes) -> bytes:
        hashed.append(token)
        return real(token)

    monkeypatch.setattr(guard_module, "digest_of", counting)
    guard = Guard(table)
    for _ in range(3):
        assert guard.check(Scope.INFER, bearer(INFER_KEY)).key_name == "client"
    assert guard.check(Scope.ADMIN, bearer(INFER_KEY)).status == 403  # scopes still apply
    assert len(hashed) == 1
    guard.use(parse_keys(KEYS))  # a reload: verified again, once
    assert guard.check(Scope.INFER, bearer(INFER_KEY)).allowed
    assert guard.check(Scope.INFER, bearer(INFER_KEY)).allowed
    assert len(hashed) == 2


def test_only_verified_keys_are_remembered_and_a_reload_forgets_them(table: KeyTable) -> None:
    guard = Guard(table)
    for attempt in range(100):  # wrong keys leave nothing behind
        assert guard.check(Scope.INFER, bearer(f"{INFER_KEY}-{attempt}")).status == 401
    assert guard.check(Scope.INFER, bearer(INFER_KEY)).allowed
    assert guard.check(Scope.INFER, bearer(INFER_KEY)).allowed
    assert guard._state.verified.keys() == {INFER_KEY.encode()}
    # Its entry now holds another key: the remembered token goes with the old table.
    replaced = f'key = "{INFER_KEY}"'.encode()
    without_client = parse_keys(KEYS.replace(replaced, b'key = "another-key-0123456789abc"'))
    guard.use(without_client)
    assert guard.check(Scope.INFER, bearer(INFER_KEY)).status == 401
    assert not guard._state.verified
