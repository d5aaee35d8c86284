"""The keys file: one ``[[keys]]`` table per API key, parsed and checked as a whole.

    [[keys]]
    name = "ci-smoke"                      # unique; what logs, spans and metrics show
    sha256 = "9f86d0818..."                # printf %s "$KEY" | sha256sum  (or: key = "...")
    scopes = ["infer", "read"]             # of infer, feedback, read, admin
    rate_per_s = 50                        # optional, per worker; burst defaults to it

Only digests are kept: a plain ``key`` is hashed as the file is read, so the key table never
holds key material, and a presented key is found by its SHA-256 digest. Error messages name
the entry (its index and name) and the field, never a field's value: a refused file is logged.

A file that does not parse, or has any invalid entry, is refused as a whole (:class:`KeysFileError`
lists every problem): applying the valid part of a half-edited file could drop keys in use. A
file without a ``keys`` array is refused as well, because an empty or truncated file looks like
that; ``keys = []`` says "no keys" on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.access.scopes import GRANTABLE, Scope

#: Names are bounded label values (metrics, spans, logs): short, plain characters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The labels the service itself uses for requests without a (valid) key.
RESERVED_NAMES = frozenset({"anonymous", "invalid"})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
#: A key travels in an HTTP header as a Bearer token: visible ASCII, no spaces.
_TOKEN = re.compile(rb"[\x21-\x7e]+")
_FIELDS = frozenset({"name", "key", "sha256", "scopes", "rate_per_s", "burst"})
#: Below this a plain key is guessable; it is accepted (the file is the operator's) with a warning.
SHORT_KEY_CHARS = 16
#: A keys file is a few lines per key; anything larger is not one.
MAX_FILE_BYTES = 1 << 20


class KeysFileError(ValueError):
    """The keys file cannot be used; the message lists every problem (no key material)."""


def digest_of(key: bytes) -> bytes:
    """The SHA-256 digest (32 bytes) a key is known by."""
    return hashlib.sha256(key).digest()


@dataclass(frozen=True, slots=True)
class Key:
    """One API key, by the digest of its secret."""

    name: str
    digest: bytes = field(repr=False)
    scopes: frozenset[Scope]
    #: Tokens per second per worker, None: unlimited.
    rate_per_s: float | None = None
    #: Bucket size (requests at once after a pause); None when unlimited.
    burst: float | None = None


@dataclass(frozen=True)
class KeyTable:
    """The keys of one valid keys file, found by the digest of a presented key."""

    keys: tuple[Key, ...]
    #: Names of keys whose plain ``key`` is shorter than SHORT_KEY_CHARS (for a warning).
    short_keys: tuple[str, ...] = ()
    _by_digest: Mapping[bytes, Key] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_digest", {key.digest: key for key in self.keys})

    def find(self, digest: bytes) -> Key | None:
        """The key whose digest is ``digest``, else None.

        The dictionary lookup hashes the digest with Python's randomised (SipHash) bytes hash,
        and the final comparison is ``hmac.compare_digest``: its time reveals nothing about a
        stored digest, and a digest reveals nothing about its key.
        """
        key = self._by_digest.get(digest)
        if key is None or not hmac.compare_digest(key.digest, digest):
            return None
        return key

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(key.name for key in self.keys)


def _number(value: Any) -> float | None:
    """A finite TOML integer or float (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _entry(index: int, entry: Any, problems: list[str]) -> tuple[Key | None, bool]:
    """One ``[[keys]]`` table -> (its Key, whether its plain key is short); problems appended."""
    if not isinstance(entry, dict):
        problems.append(f"keys[{index}]: not a table (write each key as a [[keys]] table)")
        return None, False
    raw_name = entry.get("name")
    label = f"keys[{index}]"
    errors: list[str] = []
    if not isinstance(raw_name, str):
        errors.append("name is missing or not a string")
    elif not _NAME.fullmatch(raw_name):
        errors.append("name must be 1-64 letters, digits, '.', '_' or '-', not starting with . _ -")
    elif raw_name in RESERVED_NAMES:
        errors.append(f"name {raw_name!r} is reserved (requests without a valid key are so named)")
    else:
        label = f"keys[{index}] ({raw_name!r})"
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        allowed = ", ".join(sorted(_FIELDS))
        errors.append(f"unknown field(s) {', '.join(unknown)} (allowed: {allowed})")

    digest: bytes | None = None
    short = False
    if ("key" in entry) == ("sha256" in entry):
        errors.append("give exactly one of key (the key itself) or sha256 (its hex digest)")
    elif "key" in entry:
        plain = entry["key"]
        if not isinstance(plain, str) or not plain:
            errors.append("key must be a non-empty string")
        elif not _TOKEN.fullmatch(plain.encode("utf-8")):
            errors.append("key must be visible ASCII without spaces (it is sent as a Bearer token)")
        else:
            digest = digest_of(plain.encode("ascii"))
            short = len(plain) < SHORT_KEY_CHARS
    else:
        hexdigest = entry["sha256"]
        if not isinstance(hexdigest, str) or not _HEX64.fullmatch(hexdigest):
            errors.append(
                'sha256 must be 64 hex digits: the output of printf %s "$KEY" | sha256sum '
                "without the trailing ' -'"
            )
        else:
            digest = bytes.fromhex(hexdigest)

    scopes: set[Scope] = set()
    raw_scopes = entry.get("scopes")
    if not isinstance(raw_scopes, list) or not raw_scopes:
        errors.append(f"scopes must be a non-empty list of {', '.join(sorted(GRANTABLE))}")
    else:
        for scope in raw_scopes:
            if isinstance(scope, str) and scope in GRANTABLE:
                scopes.add(Scope(scope))
            else:
                shown = repr(scope) if isinstance(scope, str) and len(scope) <= 20 else "a value"
                errors.append(f"scopes: {shown} is not one of {', '.join(sorted(GRANTABLE))}")

    rate: float | None = None
    burst: float | None = None
    if "rate_per_s" in entry:
        rate = _number(entry["rate_per_s"])
        if rate is None or rate <= 0:
            errors.append("rate_per_s must be a number > 0")
            rate = None
    if "burst" in entry:
        burst = _number(entry["burst"])
        if "rate_per_s" not in entry:
            errors.append("burst needs rate_per_s")
        elif burst is None or burst < 1:
            errors.append("burst must be a number >= 1")
    elif rate is not None:
        # The contract: burst defaults to rate_per_s; at least 1, or no request could pass.
        burst = max(rate, 1.0)

    if errors:
        problems.extend(f"{label}: {error}" for error in errors)
        return None, False
    assert isinstance(raw_name, str)
    assert digest is not None
    return Key(raw_name, digest, frozenset(scopes), rate, burst), short


def parse_keys(text: bytes) -> KeyTable:
    """The key table of a keys file's bytes; :class:`KeysFileError` if anything is wrong."""
    if len(text) > MAX_FILE_BYTES:
        raise KeysFileError(f"larger than {MAX_FILE_BYTES} bytes: not a keys file")
    try:
        source = text.decode("utf-8")
    except UnicodeDecodeError:
        # The exception's own message quotes the offending byte: it could be key material.
        raise KeysFileError("not UTF-8 text (TOML files are UTF-8)") from None
    try:
        document = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages are fixed texts plus a line and column, never file content.
        raise KeysFileError(f"not valid TOML: {exc}") from None
    problems: list[str] = []
    unknown = sorted(set(document) - {"keys"})
    if unknown:
        problems.append(f"unknown top-level entries {', '.join(unknown)} (only [[keys]] tables)")
    entries = document.get("keys")
    if entries is None:
        problems.append(
            "no [[keys]] table: an empty or half-written file is refused; "
            "write keys = [] to have no keys on purpose"
        )
        entries = []
    elif not isinstance(entries, list):
        problems.append("keys must be an array of tables ([[keys]])")
        entries = []
    keys: list[Key] = []
    short: list[str] = []
    for index, entry in enumerate(entries):
        key, is_short = _entry(index, entry, problems)
        if key is not None:
            keys.append(key)
            if is_short:
                short.append(key.name)
    seen_names: dict[str, int] = {}
    seen_digests: dict[bytes, str] = {}
    for key in keys:
        if key.name in seen_names:
            problems.append(f"name {key.name!r} is used by more than one key")
        seen_names[key.name] = 1
        other = seen_digests.get(key.digest)
        if other is not None:
            problems.append(f"keys {other!r} and {key.name!r} are the same key")
        seen_digests[key.digest] = key.name
    if problems:
        raise KeysFileError("; ".join(problems))
    return KeyTable(tuple(keys), tuple(short))


def read_keys_file(path: Path) -> bytes:
    """The bytes of the keys file (following symlinks); :class:`KeysFileError` if unreadable."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeysFileError(f"{path}: no such file") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise KeysFileError(f"{path}: cannot be read ({why})") from None
    return data


def load_keys(path: Path) -> KeyTable:
    """Read and parse the keys file at ``path``; :class:`KeysFileError` (naming it) if unusable."""
    data = read_keys_file(path)
    try:
        return parse_keys(data)
    except KeysFileError as exc:
        raise KeysFileError(f"{path}: {exc}") from None
