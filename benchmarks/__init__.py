"""Benchmark harness: ``python -m benchmarks --models models`` (see docs/readme/loadtest.md)."""
