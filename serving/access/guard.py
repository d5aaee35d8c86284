"""The access decision for one request, from its route's scope and its raw ``Authorization``.

Transport-agnostic: the HTTP header pass and a gRPC door (``authorization`` metadata) ask the
same question, before any body is read, and render the answer in their own error shape:

    decision = guard.check(route_scope_of_target(method, target), authorization)
    if not decision.allowed:
        answer decision.status with decision.message and decision.headers
    log / label / span attribute: decision.key_name (bounded: a key's name, "anonymous", "invalid")

The rules (docs/security.md):
- ``open`` routes (health, the page) are always allowed, whatever the request carries.
- No keys file: the admin API is off (403, saying how to turn it on); everything else is open
  and an ``Authorization`` header is ignored.
- With a keys file: a request without ``Authorization`` is allowed where anonymous callers are
  (infer, feedback, read and unrouted paths, unless ``require_keys``), else 401. A presented key
  is always verified: unknown or malformed -> 401 (a mistyped key is told so at once, not when
  keys become required); a valid key without the route's scope -> 403 (the same answer with or
  without ``require_keys``); unrouted paths accept any valid key so the app's 404 stays a 404;
  then the key's token bucket -> 429 with ``Retry-After`` when empty.

No decision, log or exception holds a presented key. A key that verified is remembered by this
worker, in memory, until the next key table: its next request costs a dictionary lookup instead
of a SHA-256 (the SHA-256 cost ~10 µs a request at c=1, 2-3 % of the latency; docs/decisions.md).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from serving.access.keys import Key, KeyTable, digest_of
from serving.access.limits import TokenBucket
from serving.access.scopes import Scope, route_scope_of_target

#: key_name of a request that sent no key (or where keys are not checked).
ANONYMOUS = "anonymous"
#: key_name of a request whose key is unknown or whose Authorization header is malformed.
INVALID = "invalid"


class Reason(StrEnum):
    """Why: a bounded label for the rejection metric."""

    ALLOWED = "allowed"
    MISSING_KEY = "missing_key"
    INVALID_KEY = "invalid_key"
    FORBIDDEN = "forbidden"
    ADMIN_OFF = "admin_off"
    RATE_LIMITED = "rate_limited"


Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """Allow (``status`` 200) or refuse with ``status``, ``message`` and ``headers``."""

    allowed: bool
    status: int
    reason: Reason
    #: For access logs, span attributes and metric labels: bounded (names from the keys file,
    #: ANONYMOUS, INVALID), never the key itself.
    key_name: str
    #: The error message, for the body in the route's error shape (v1 object or OIP string).
    message: str = ""
    #: Lower-case header names and values to add to the refusal (WWW-Authenticate, Retry-After).
    headers: Headers = ()


ALLOW_ANONYMOUS = Decision(True, 200, Reason.ALLOWED, ANONYMOUS)
ADMIN_OFF = Decision(
    False,
    403,
    Reason.ADMIN_OFF,
    ANONYMOUS,
    "the admin API is off: no keys file is configured. Set SERVING_KEYS_FILE (--keys-file) to "
    "a keys file with a key that has the admin scope and send it as Authorization: Bearer <key> "
    "(docs/security.md)",
)
INVALID_KEY = Decision(
    False,
    401,
    Reason.INVALID_KEY,
    INVALID,
    "the API key is not valid",
    ((b"www-authenticate", b'Bearer error="invalid_token"'),),
)
MALFORMED = Decision(
    False,
    401,
    Reason.INVALID_KEY,
    INVALID,
    "the Authorization header must be: Bearer <key>",
    ((b"www-authenticate", b'Bearer error="invalid_request"'),),
)


def _missing(scope: Scope) -> Decision:
    needs = "an API key" if scope is Scope.UNROUTED else f"an API key with the {scope} scope"
    return Decision(
        False,
        401,
        Reason.MISSING_KEY,
        ANONYMOUS,
        f"this route needs {needs}: send Authorization: Bearer <key>",
        ((b"www-authenticate", b"Bearer"),),
    )


_MISSING = {scope: _missing(scope) for scope in Scope}


def bearer_token(authorization: bytes | str) -> bytes | None:
    """The token of ``Bearer <token>`` (scheme in any case, spaces or tabs around and between),
    else None: other schemes, no token, or more than one."""
    if isinstance(authorization, str):
        try:
            authorization = authorization.encode("latin-1")
        except UnicodeEncodeError:
            return None
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != b"bearer":
        return None
    return parts[1]


@dataclass(frozen=True, slots=True)
class _Entry:
    key: Key
    allow: Decision
    bucket: TokenBucket | None


@dataclass(frozen=True, slots=True)
class _State:
    """One key table with its precomputed answers; swapped as a whole (one reference)."""

    table: KeyTable | None
    by_digest: dict[bytes, _Entry]
    #: The presented tokens that verified against this table: at most one per key (only a
    #: verified token goes in), gone with the table when a reload swaps in the next one.
    verified: dict[bytes, _Entry] = field(default_factory=dict)


class Guard:
    """Decides every request of one worker; ``use`` swaps in a reloaded key table."""

    def __init__(
        self,
        table: KeyTable | None,
        *,
        require_keys: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``table`` None: no keys file (admin off, the rest open). ``require_keys``: infer,
        feedback and read need a key too (needs a table)."""
        if require_keys and table is None:
            raise ValueError("require_keys needs a keys file: no request could be allowed")
        self.require_keys = require_keys
        self._clock = clock
        #: Scopes a request without a key may use.
        self._anonymous = (
            frozenset({Scope.OPEN})
            if require_keys
            else frozenset({Scope.OPEN, Scope.INFER, Scope.FEEDBACK, Scope.READ, Scope.UNROUTED})
        )
        self._state = _State(None, {})
        if table is not None:
            self.use(table)

    @property
    def table(self) -> KeyTable | None:
        """The key table in force (None: no keys file)."""
        return self._state.table

    def use(self, table: KeyTable) -> None:
        """Swap in ``table``. Buckets of keys that stay (by name) keep their tokens; removed
        keys lose theirs. One reference is replaced, so a request sees the old or the new table,
        never a mix."""
        now = self._clock()
        old = {entry.key.name: entry.bucket for entry in self._state.by_digest.values()}
        entries: dict[bytes, _Entry] = {}
        for key in table.keys:
            bucket = old.get(key.name)
            if key.rate_per_s is None or key.burst is None:
                bucket = None
            elif bucket is None:
                bucket = TokenBucket(key.rate_per_s, key.burst, now)
            else:
                bucket.reconfigure(key.rate_per_s, key.burst, now)
            allow = Decision(True, 200, Reason.ALLOWED, key.name)
            entries[key.digest] = _Entry(key, allow, bucket)
        self._state = _State(table, entries)

    def bucket(self, name: str) -> TokenBucket | None:
        """The token bucket of the key called ``name`` (None: unlimited or no such key)."""
        for entry in self._state.by_digest.values():
            if entry.key.name == name:
                return entry.bucket
        return None

    def check(self, scope: Scope, authorization: bytes | str | None) -> Decision:
        """The decision for a request to a route of ``scope`` carrying ``authorization`` (the
        raw header value, None when absent; a request with several Authorization headers should
        pass them joined with ", ", which is refused as malformed)."""
        if scope is Scope.OPEN:
            return ALLOW_ANONYMOUS
        state = self._state
        if state.table is None:
            return ADMIN_OFF if scope is Scope.ADMIN else ALLOW_ANONYMOUS
        if authorization is None:
            return ALLOW_ANONYMOUS if scope in self._anonymous else _MISSING[scope]
        token = bearer_token(authorization)
        if token is None:
            return MALFORMED
        # A token verified before is found by Python's randomised (SipHash) hash of it; its
        # bytes are compared only when the whole 64-bit hash matches, which a caller cannot aim
        # at without knowing the key. Any other token is verified by its digest.
        entry = state.verified.get(token)
        if entry is None:
            digest = digest_of(token)
            entry = state.by_digest.get(digest)
            # Found by a randomised hash of the digest; compare_digest makes the final comparison
            # take the same time whatever the bytes (keys.KeyTable.find explains why that suffices).
            if entry is None or not hmac.compare_digest(entry.key.digest, digest):
                return INVALID_KEY
            state.verified[token] = entry
        key = entry.key
        if scope not in key.scopes and scope is not Scope.UNROUTED:
            return self._forbidden(key, scope)
        bucket = entry.bucket
        if bucket is not None:
            wait_s = bucket.take(self._clock())
            if wait_s > 0.0:
                return self._rate_limited(key, bucket, wait_s)
        return entry.allow

    def check_target(
        self, method: bytes, target: bytes, authorization: bytes | str | None
    ) -> Decision:
        """:meth:`check` for the raw method and request target of the HTTP header pass."""
        return self.check(route_scope_of_target(method, target), authorization)

    @staticmethod
    def _forbidden(key: Key, scope: Scope) -> Decision:
        challenge = f'Bearer error="insufficient_scope", scope="{scope}"'.encode()
        return Decision(
            False,
            403,
            Reason.FORBIDDEN,
            key.name,
            f"the key {key.name!r} does not have the {scope} scope",
            ((b"www-authenticate", challenge),),
        )

    @staticmethod
    def _rate_limited(key: Key, bucket: TokenBucket, wait_s: float) -> Decision:
        retry_after = max(1, math.ceil(wait_s))
        return Decision(
            False,
            429,
            Reason.RATE_LIMITED,
            key.name,
            f"the key {key.name!r} is over its rate limit ({bucket.rate_per_s:g}/s, burst "
            f"{bucket.burst:g}, per worker): retry after {retry_after} s",
            ((b"retry-after", str(retry_after).encode()),),
        )


__all__ = [
    "ADMIN_OFF",
    "ALLOW_ANONYMOUS",
    "ANONYMOUS",
    "INVALID",
    "Decision",
    "Guard",
    "Reason",
    "bearer_token",
]
