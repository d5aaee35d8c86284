"""``GET /v1/rollout`` and the admin decisions ``POST /v1/rollout/promote|rollback``: the
report, a decision's body (a reason, or 400/422), 409 when nothing runs, and the admin scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.api.rollout import decode_decision
from serving.pipeline.errors import InvalidInputError, MalformedBodyError
from serving.settings import Settings
from tests.conftest import AppStarter

ADMIN = {"authorization": "Bearer admin-key-0123456789"}


def test_a_decision_needs_a_json_object_with_a_reason() -> None:
    assert decode_decision(b'{"reason": "v2 misreads sevens"}') == "v2 misreads sevens"
    with pytest.raises(MalformedBodyError):
        decode_decision(b"{not json")
    for body in (b"{}", b'{"reason": ""}', b'{"reason": "x", "force": true}', b"[]"):
        with pytest.raises(InvalidInputError):
            decode_decision(body)


def test_the_report_without_a_rollout(app_client: AppStarter) -> None:
    with app_client() as client:
        body = client.get("/v1/rollout").json()
    assert (body["model"], body["running"], body["stable"]) == ("mnist", False, 1)
    assert body["candidate"] is None
    assert body["mode"] == "replace"


def test_decisions_are_admin_and_need_a_running_rollout(
    settings: Settings, app_client: AppStarter, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "ops"\nkey = "admin-key-0123456789"\nscopes = ["admin"]\n')
    reason = {"reason": "checked by hand"}
    with app_client() as without_keys:  # no keys file: the admin API is off
        off = without_keys.post("/v1/rollout/promote", json=reason)
    with app_client(settings.model_copy(update={"keys_file": keys})) as client:
        anonymous = client.post("/v1/rollout/rollback", json=reason)
        idle = client.post("/v1/rollout/promote", json=reason, headers=ADMIN)
        no_reason = client.post("/v1/rollout/rollback", json={}, headers=ADMIN)
    assert off.status_code == 403
    assert anonymous.status_code == 401
    assert idle.status_code == 409
    assert "no rollout is running" in idle.json()["error"]["message"]
    assert no_reason.status_code == 422
