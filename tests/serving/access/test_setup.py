"""The access settings, their flags, build_access and the TLS pass-through to uvicorn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.__main__ import parse_args
from serving.access.keys import KeysFileError
from serving.access.scopes import Scope
from serving.access.setup import build_access
from serving.settings import Settings
from serving.transport.server import uvicorn_config

KEY = "setup-test-9d2f4a6c8e0b1d3f"
KEYS = f'[[keys]]\nname = "ops"\nkey = "{KEY}"\nscopes = ["admin"]\n'


def test_the_contract_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    cert, private = tmp_path / "cert.pem", tmp_path / "key.pem"
    for path in (keys, cert, private):
        path.write_text("x")
    monkeypatch.setenv("SERVING_KEYS_FILE", str(keys))
    monkeypatch.setenv("SERVING_REQUIRE_KEYS", "true")
    monkeypatch.setenv("SERVING_SSL_CERTFILE", str(cert))
    monkeypatch.setenv("SERVING_SSL_KEYFILE", str(private))
    settings = Settings()
    assert (settings.keys_file, settings.require_keys) == (keys, True)
    assert (settings.ssl_certfile, settings.ssl_keyfile) == (cert, private)
    assert settings.keys_reload_interval_s == 2.0


def test_the_defaults_are_no_keys_and_plain_http() -> None:
    settings = Settings()
    assert settings.keys_file is None
    assert settings.require_keys is False
    assert settings.ssl_certfile is None
    assert settings.ssl_keyfile is None


def test_inconsistent_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="require_keys needs keys_file"):
        Settings(require_keys=True)
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ValidationError, match="ssl_certfile and ssl_keyfile together"):
        Settings(ssl_certfile=cert)
    with pytest.raises(ValidationError, match=r"ssl_keyfile .*missing\.pem is not a file"):
        Settings(ssl_certfile=cert, ssl_keyfile=tmp_path / "missing.pem")


def test_the_flags(tmp_path: Path) -> None:
    parsed = parse_args(
        ["--keys-file", "k.toml", "--ssl-certfile", "c.pem", "--ssl-keyfile", "p.pem"]
    )
    assert parsed == {
        "keys_file": Path("k.toml"),
        "ssl_certfile": Path("c.pem"),
        "ssl_keyfile": Path("p.pem"),
    }
    assert parse_args([]) == {}  # absent flags leave the environment in force


def test_uvicorn_gets_the_certificate_and_key(tmp_path: Path) -> None:
    cert, private = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    private.write_text("x")
    config = uvicorn_config(Settings(ssl_certfile=cert, ssl_keyfile=private))
    assert (config.ssl_certfile, config.ssl_keyfile) == (cert, private)
    assert config.is_ssl
    plain = uvicorn_config(Settings())
    assert (plain.ssl_certfile, plain.ssl_keyfile, plain.is_ssl) == (None, None, False)


def test_without_a_keys_file_admin_is_off_and_nothing_is_watched() -> None:
    access = build_access(Settings())
    assert access.reloader is None
    assert access.guard.check(Scope.ADMIN, f"Bearer {KEY}".encode()).status == 403
    assert access.guard.check(Scope.INFER, None).allowed
    asyncio.run(access.watch())  # returns at once


def test_with_a_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(KEYS)
    refused: list[str] = []
    access = build_access(
        Settings(keys_file=keys, require_keys=True, keys_reload_interval_s=0.5),
        on_refused=refused.append,
    )
    assert access.reload_interval_s == 0.5
    assert access.guard.require_keys
    assert access.guard.check(Scope.ADMIN, f"Bearer {KEY}".encode()).key_name == "ops"
    assert access.guard.check(Scope.INFER, None).status == 401
    # The reloader feeds this guard.
    assert access.reloader is not None
    keys.write_text(KEYS.replace('["admin"]', '["read"]'))
    access.reloader.check()
    assert access.guard.check(Scope.ADMIN, f"Bearer {KEY}".encode()).status == 403
    keys.write_text("not toml [")
    access.reloader.check()
    assert refused == ["invalid"]


def test_a_keys_file_that_cannot_be_used_stops_the_start(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "x"\n')
    with pytest.raises(KeysFileError, match=r"keys\.toml: keys\[0\] \('x'\)"):
        build_access(Settings(keys_file=keys))
