"""The keys file: real TOML files parsed and checked as a whole, errors that name the entry and
never the key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from serving.access.keys import (
    MAX_FILE_BYTES,
    KeysFileError,
    digest_of,
    load_keys,
    parse_keys,
)
from serving.access.scopes import Scope

SECRET = "k-2b7e151628aed2a6abf7158809cf4f3c"  # a plain key used throughout
OTHER = "k-3243f6a8885a308d313198a2e0370734"


def sha256_hex(key: str) -> str:
    """What the docs tell operators to run: printf %s "$KEY" | sha256sum."""
    return hashlib.sha256(key.encode()).hexdigest()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    return path


VALID = f"""
# Two keys: one plain, one by digest.
[[keys]]
name = "ci-smoke"
key = "{SECRET}"
scopes = ["infer", "read"]
rate_per_s = 5

[[keys]]
name = "ops.admin_1"
sha256 = "{sha256_hex(OTHER).upper()}"
scopes = ["admin", "read", "feedback", "infer"]
rate_per_s = 0.5
burst = 3
"""


def test_a_valid_file(tmp_path: Path) -> None:
    table = load_keys(write(tmp_path, VALID))
    assert table.names == ("ci-smoke", "ops.admin_1")
    smoke, admin = table.keys
    assert smoke.scopes == {Scope.INFER, Scope.READ}
    assert (smoke.rate_per_s, smoke.burst) == (5.0, 5.0)  # burst defaults to rate_per_s
    assert admin.scopes == {Scope.ADMIN, Scope.READ, Scope.FEEDBACK, Scope.INFER}
    assert (admin.rate_per_s, admin.burst) == (0.5, 3.0)
    # A plain key and a digest of the same key are the same thing to the table.
    assert table.find(digest_of(SECRET.encode())) == smoke
    assert table.find(hashlib.sha256(OTHER.encode()).digest()) == admin
    assert table.find(digest_of(b"wrong")) is None
    assert table.short_keys == ()


def test_the_table_keeps_no_key_material(tmp_path: Path) -> None:
    table = load_keys(write(tmp_path, VALID))
    shown = repr(table) + "".join(repr(key) for key in table.keys)
    assert SECRET not in shown
    assert sha256_hex(SECRET) not in shown.lower()  # digests are not shown either


def test_no_rate_limit_and_a_small_rate_gets_a_usable_burst() -> None:
    table = parse_keys(
        b'[[keys]]\nname = "a"\nkey = "' + SECRET.encode() + b'"\nscopes = ["read"]\n'
        b'[[keys]]\nname = "b"\nkey = "' + OTHER.encode() + b'"\nscopes = ["read"]\n'
        b"rate_per_s = 0.2\n"
    )
    a, b = table.keys
    assert (a.rate_per_s, a.burst) == (None, None)
    assert (b.rate_per_s, b.burst) == (0.2, 1.0)  # at least one request can pass


def test_keys_empty_on_purpose_is_valid_but_an_empty_file_is_refused(tmp_path: Path) -> None:
    assert load_keys(write(tmp_path, "keys = []\n")).keys == ()
    with pytest.raises(KeysFileError, match=r"no \[\[keys\]\] table.*keys = \[\]"):
        load_keys(write(tmp_path, ""))
    with pytest.raises(KeysFileError, match="no \\[\\[keys\\]\\] table"):
        load_keys(write(tmp_path, "# all keys removed?\n"))


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('key = "K"\nscopes = ["read"]', r"keys\[0\]: name is missing"),
        ('name = "a b"\nkey = "K"\nscopes = ["read"]', r"keys\[0\]: name must be"),
        ('name = "-x"\nkey = "K"\nscopes = ["read"]', r"keys\[0\]: name must be"),
        ('name = "anonymous"\nkey = "K"\nscopes = ["read"]', r"'anonymous' is reserved"),
        ('name = "invalid"\nkey = "K"\nscopes = ["read"]', r"'invalid' is reserved"),
        ('name = "a"\nscopes = ["read"]', r"keys\[0\] \('a'\): give exactly one of key"),
        ('name = "a"\nkey = "K"\nsha256 = "H"\nscopes = ["read"]', r"\('a'\): give exactly one"),
        ('name = "a"\nkey = ""\nscopes = ["read"]', r"\('a'\): key must be a non-empty string"),
        ('name = "a"\nkey = 12\nscopes = ["read"]', r"\('a'\): key must be a non-empty string"),
        ('name = "a"\nkey = "has space"\nscopes = ["read"]', r"\('a'\): key must be visible"),
        ('name = "a"\nkey = "caf\u00e9-key"\nscopes = ["read"]', r"\('a'\): key must be visible"),
        ('name = "a"\nsha256 = "abc"\nscopes = ["read"]', r"\('a'\): sha256 must be 64 hex"),
        (f'name = "a"\nsha256 = "{"g" * 64}"\nscopes = ["read"]', r"sha256 must be 64 hex"),
        (f'name = "a"\nsha256 = "{"a" * 64}  -"\nscopes = ["read"]', r"without the trailing"),
        ('name = "a"\nkey = "K"', r"\('a'\): scopes must be a non-empty list"),
        ('name = "a"\nkey = "K"\nscopes = []', r"scopes must be a non-empty list"),
        ('name = "a"\nkey = "K"\nscopes = "read"', r"scopes must be a non-empty list"),
        ('name = "a"\nkey = "K"\nscopes = ["read", "write"]', r"scopes: 'write' is not one of"),
        ('name = "a"\nkey = "K"\nscopes = ["open"]', r"scopes: 'open' is not one of"),
        ('name = "a"\nkey = "K"\nscopes = ["read"]\nrate_per_s = 0', r"rate_per_s must be .* > 0"),
        ('name = "a"\nkey = "K"\nscopes = ["read"]\nrate_per_s = -1', r"rate_per_s must be"),
        ('name = "a"\nkey = "K"\nscopes = ["read"]\nrate_per_s = true', r"rate_per_s must be"),
        ('name = "a"\nkey = "K"\nscopes = ["read"]\nrate_per_s = inf', r"rate_per_s must be"),
        ('name = "a"\nkey = "K"\nscopes = ["read"]\nrate_per_s = nan', r"rate_per_s must be"),
        ('name = "a"\nkey = "K"\nscopes = ["read"]\nburst = 5', r"burst needs rate_per_s"),
        ('name = "a"\nkey = "K"\nscopes = ["read"]\nrate_per_s = 1\nburst = 0.5', r"burst must"),
        ('name = "a"\nkey = "K"\nscopes = ["read"]\nscope = ["admin"]', r"unknown field\(s\) sc"),
    ],
)
def test_each_invalid_entry_is_named_and_the_whole_file_refused(
    tmp_path: Path, entry: str, problem: str
) -> None:
    """A valid key beside the invalid one does not survive: the file is refused as a whole."""
    text = f'[[keys]]\n{entry.replace("K", SECRET)}\n\n[[keys]]\nname = "good"\nkey = "{OTHER}"\n'
    text += 'scopes = ["admin"]\n'
    with pytest.raises(KeysFileError, match=problem) as caught:
        load_keys(write(tmp_path, text))
    assert str(tmp_path / "keys.toml") in str(caught.value)
    assert SECRET not in str(caught.value)
    assert OTHER not in str(caught.value)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = (
        '[[keys]]\nname = "a"\nkey = "K1-long-enough-key"\nscopes = ["rw"]\n'
        '[[keys]]\nname = "b"\nscopes = ["read"]\n'
    )
    with pytest.raises(KeysFileError) as caught:
        load_keys(write(tmp_path, text))
    message = str(caught.value)
    assert "keys[0] ('a'): scopes: 'rw'" in message
    assert "keys[1] ('b'): give exactly one of key" in message


def test_duplicate_names_and_duplicate_keys_are_refused() -> None:
    same_name = (
        f'[[keys]]\nname = "a"\nkey = "{SECRET}"\nscopes = ["read"]\n'
        f'[[keys]]\nname = "a"\nkey = "{OTHER}"\nscopes = ["read"]\n'
    )
    with pytest.raises(KeysFileError, match="name 'a' is used by more than one key"):
        parse_keys(same_name.encode())
    # The same key twice (once plain, once hashed) would make a lookup ambiguous.
    same_key = (
        f'[[keys]]\nname = "a"\nkey = "{SECRET}"\nscopes = ["read"]\n'
        f'[[keys]]\nname = "b"\nsha256 = "{sha256_hex(SECRET)}"\nscopes = ["admin"]\n'
    )
    with pytest.raises(KeysFileError, match="keys 'a' and 'b' are the same key"):
        parse_keys(same_key.encode())


def test_a_file_that_does_not_parse_is_refused_without_its_content(tmp_path: Path) -> None:
    # The key's closing quote is missing: the TOML error points at it, but must not quote it.
    broken = f'[[keys]]\nname = "a"\nkey = "{SECRET}\nscopes = ["read"]\n'
    with pytest.raises(KeysFileError, match=r"not valid TOML: .*line 3") as caught:
        load_keys(write(tmp_path, broken))
    assert SECRET not in str(caught.value)
    assert SECRET[:8] not in str(caught.value)


def test_structure_errors(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="unknown top-level entries key"):
        load_keys(write(tmp_path, f'[[key]]\nname = "a"\nkey = "{SECRET}"\nscopes = ["read"]\n'))
    with pytest.raises(KeysFileError, match="keys must be an array of tables"):
        load_keys(write(tmp_path, 'keys = "none"\n'))
    with pytest.raises(KeysFileError, match=r"keys\[0\]: not a table"):
        load_keys(write(tmp_path, "keys = [1]\n"))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="no such file"):
        load_keys(tmp_path / "missing.toml")
    with pytest.raises(KeysFileError, match="cannot be read"):
        load_keys(tmp_path)  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'[[keys]]\nname = "a"\nkey = "\xff\xfe-secret"\nscopes = ["read"]\n')
    with pytest.raises(KeysFileError, match="not UTF-8") as caught:
        load_keys(binary)
    assert "secret" not in str(caught.value)
    assert "0xff" not in str(caught.value)
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"keys = []\n" + b"#" * MAX_FILE_BYTES)
    with pytest.raises(KeysFileError, match="larger than"):
        load_keys(huge)


def test_short_plain_keys_are_accepted_but_reported() -> None:
    table = parse_keys(b'[[keys]]\nname = "dev"\nkey = "abc"\nscopes = ["read"]\n')
    assert table.short_keys == ("dev",)
