"""Locust scenarios against ``POST /v1/predict`` with a p95/error-rate gate.

Entry point: ``locust -f loadtest/locustfile.py``. The logic that decides things (bodies, schema,
gate, percentile buckets, step-load bookkeeping) lives in modules that do not import Locust, so it
can be unit-tested without gevent's monkey-patching leaking into the rest of the test suite.
"""
