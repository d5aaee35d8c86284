"""Benchmark harness: ``python -m benchmarks --models models`` (README: "Load test...")."""
