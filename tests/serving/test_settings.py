"""Settings: read once from ``SERVING_*`` (and the plain ``PORT``), frozen, and refused as a whole
when they contradict each other, with a message that says which."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.settings import Settings


# Moved from test_settings_and_cli.py (now test_main.py), unchanged.
def test_environment_and_plain_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("SERVING_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("SERVING_MODEL_VARIANT", "int8")
    settings = Settings()
    assert settings.port == 9100
    assert settings.max_batch_size == 16
    assert settings.model_variant == "int8"
    monkeypatch.setenv("SERVING_PORT", "9200")
    assert Settings().port == 9200


def test_queue_must_hold_a_full_request() -> None:
    with pytest.raises(ValidationError, match="max_queue_size"):
        Settings(max_queue_size=10, max_instances=20)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.port = 1


def test_an_unknown_serving_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable of another version or of a sibling (SERVING_ROLLOUT_*) must not stop a start."""
    monkeypatch.setenv("SERVING_NO_SUCH_SETTING", "1")
    assert "no_such_setting" not in Settings().model_dump()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"port": 9000, "grpc_port": 9000}, "give gRPC its own port"),
        ({"model_versions": 0}, "model_versions 0 serves only the pinned version"),
        (
            {"request_timeout_ms": 2000, "max_request_timeout_ms": 1000},
            "max_request_timeout_ms must be >= request_timeout_ms",
        ),
        ({"require_keys": True}, "require_keys needs keys_file"),
        ({"ssl_certfile": Path(__file__)}, "set ssl_certfile and ssl_keyfile together"),
        (
            {"ssl_certfile": Path(__file__), "ssl_keyfile": Path("/no/such/key.pem")},
            "ssl_keyfile /no/such/key.pem is not a file",
        ),
    ],
)
def test_contradictory_settings_are_refused_saying_why(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]


def test_the_consistent_neighbours_of_those_are_accepted(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.touch()
    assert Settings(port=9000, grpc_port=0).grpc_port == 0  # gRPC off may share "port" 0
    assert Settings(model_versions=0, model_version=3).model_version == 3
    assert Settings(require_keys=True, keys_file=keys).require_keys
    pem = Path(__file__)
    assert Settings(ssl_certfile=pem, ssl_keyfile=pem).ssl_keyfile == pem
