"""schemathesis (pinned in the dev extra) against the OpenAPI document a real server serves: every
operation fuzzed, no 5xx, every response matching its documented status, headers and schema.

Bounded (about a minute here): a fixed seed and example count keep CI time and results stable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ServerStarter

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MAX_EXAMPLES = 100


def test_served_openapi_document_holds_under_fuzzing(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path
) -> None:
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert executable, "schemathesis is in the dev extra"
    # With a keys file, so that the control API is on: schemathesis sends the admin key (it
    # holds every scope) and checks that a request without it is refused with 401.
    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[[keys]]\nname = "fuzz"\nkey = "fuzz-key-0123456789"\n'
        'scopes = ["infer", "feedback", "read", "admin"]\n'
    )
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_LOG_LEVEL": "warning",
        "SERVING_KEYS_FILE": str(keys),
    }
    with serving_server(env) as server:
        result = subprocess.run(
            [
                executable,
                "run",
                f"{server.base_url}/schema/openapi.json",
                "--checks",
                "all",
                "--header",
                "Authorization: Bearer fuzz-key-0123456789",
                # A schema cannot say "a 28x28 PNG" or "N x 784 bytes": schema-valid binary bodies
                # are rightly refused (422), which this one check would call a failure.
                "--exclude-checks",
                "positive_data_acceptance",
                # Unloading the model is a legitimate administrative call that leaves every
                # other operation answering 404/503; it is tested on its own
                # (tests/serving/api/v2/test_tritonclient.py::test_model_repository_extension).
                "--exclude-path",
                "/v2/repository/models/{name}/unload",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                "14",
                "--request-timeout",
                "10",
                "--continue-on-failure",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # Warnings (e.g. generated bodies the API rightly refuses) are not failures; every case passed.
    counts = re.search(r"(\d+) generated, (\d+) passed(?:, \d+ skipped)?\s*$", result.stdout, re.M)
    assert counts, result.stdout[-3000:]
    assert counts[1] == counts[2], result.stdout[-3000:]
    assert int(counts[1]) > 500
