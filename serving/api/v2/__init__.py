"""The Open Inference Protocol v2 REST API (KServe, Triton, MLServer), on the v1 batcher.

Kept import-free: ``serving.api.errors`` imports :mod:`serving.api.v2.errors`, and the routes
import ``serving.api.errors``.
"""
