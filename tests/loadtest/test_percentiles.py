"""Percentiles resolve below 1 ms once the locustfile has replaced Locust's bucketing.

Importing Locust monkey-patches the whole process with gevent, so whatever touches Locust runs in
a subprocess, keeping the rest of the test suite unpatched.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from loadtest.percentiles import fine_bucket

REPO = Path(__file__).resolve().parents[2]


def test_fine_bucket_keeps_three_significant_digits() -> None:
    assert fine_bucket(0.43721) == 0.437
    assert fine_bucket(12.345) == 12.3
    assert fine_bucket(1234.5) == 1230.0
    assert fine_bucket(0.0) == 0.0


def _p50_after(setup: str) -> float:
    code = textwrap.dedent(
        f"""
        import locust.stats
        {setup}
        stats = locust.stats.RequestStats()
        for ms in (0.31, 0.42, 0.43, 0.44, 0.61):
            stats.log_request("POST", "/v1/predict", ms, 100)
        print(stats.total.get_response_time_percentile(0.5))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def test_locust_rounds_sub_millisecond_times_by_default() -> None:
    assert _p50_after("") == 0.0


def test_importing_the_locustfile_installs_fine_buckets() -> None:
    setup = (
        "import loadtest.locustfile\n"
        "        from loadtest.percentiles import fine_bucket\n"
        "        assert locust.stats.bucket_response_time is fine_bucket"
    )
    assert _p50_after(setup) == 0.43
