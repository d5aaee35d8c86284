"""Benchmark harness: ``python -m benchmarks --models models`` (docs/performance.md)."""
