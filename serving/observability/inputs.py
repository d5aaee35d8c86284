"""Aberrant inputs: rejected values by reason, and accepted images that are blank or saturated.

Rejections are counted from the API's 422 errors (``InvalidInputError.reason``) by an
``after_exception`` hook, so the request path does no extra work. Accepted images are judged on
the per-image features the drift window computes anyway (``model_repository.features``): an
image with almost no ink is ``near_blank``, one that is mostly bright (e.g. an inverted scan) is
``saturated``. They are counted among the images the drift window absorbs: every image while
traffic stays under ``drift_window`` images per sample interval, the most recent ones beyond.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter

from serving.pipeline.errors import InvalidInputError

PREFIX = "inference"
#: Fewer than ~4 of 784 pixels above the ink threshold (MNIST digits have dozens).
NEAR_BLANK_INK = 0.005
#: More than half the image bright on average (MNIST's mean intensity is ~0.13).
SATURATED_MEAN = 0.5
REJECT_REASONS = ("non_finite", "out_of_range", "wrong_size", "wrong_type", "instance_count")


class InputMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter(
            f"{PREFIX}_rejected_inputs",
            "Requests refused with 422 by the first problem found: non_finite, out_of_range, "
            "wrong_size, wrong_type, instance_count, invalid.",
            ["reason"], registry=registry,
        )  # fmt: skip
        self.aberrant = Counter(
            f"{PREFIX}_aberrant_inputs",
            "Accepted images that are near_blank or saturated.",
            ["reason"], registry=registry,
        )  # fmt: skip

    def on_exception(self, exc: Exception, scope: Any) -> None:
        """Litestar ``after_exception`` hook: count a refused input by its reason."""
        if isinstance(exc, InvalidInputError):
            reason = exc.reason if exc.reason in REJECT_REASONS else "invalid"
            self.rejected.labels(reason).inc()

    def observe(self, features: Mapping[str, npt.NDArray[np.floating]]) -> None:
        """Count the near-blank and saturated images among freshly absorbed ones."""
        ink = features.get("ink_fraction")
        mean = features.get("mean_intensity")
        if ink is not None and (blank := int(np.count_nonzero(ink < NEAR_BLANK_INK))):
            self.aberrant.labels("near_blank").inc(blank)
        if mean is not None and (bright := int(np.count_nonzero(mean > SATURATED_MEAN))):
            self.aberrant.labels("saturated").inc(bright)
