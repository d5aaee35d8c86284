"""Input drift: a sliding window of per-image features of live traffic, compared by PSI with the
distribution the model was trained on (``metadata.training_stats``).

The features and the PSI formula are ``model_repository.features`` (shared with training, so the
two sides cannot compute them differently). Per batch, :meth:`DriftMonitor.update` only copies
the input rows into a ring of raw pixels (a window's worth: older rows would leave the window
anyway). It copies rather than keep a reference to the batch's array: a kept array cannot be
freed when its request is answered, so the next request's arrays land in cold memory (~1 % of the
c=1 latency, measured). Features, their ring buffer and PSI are computed when a report is asked
for: on each scrape and by the plugin's periodic sampler, never per batch.

Reading the score (``model_repository.features``): PSI < 0.1 (PSI_WARN) stable; 0.1-0.25
moderate shift, look at it; > 0.25 (PSI_ALERT) the inputs no longer look like the training data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Gauge

from model_repository.features import FEATURE_NAMES, image_features, psi
from model_repository.metadata import TrainingStats

PREFIX = "inference_drift"


@dataclass(frozen=True, slots=True)
class DriftReport:
    """PSI per feature, the window's mean per feature, and how many images the window holds."""

    psi: dict[str, float]
    window_mean: dict[str, float]
    window_images: int

    @property
    def max_psi(self) -> float:
        return max(self.psi.values(), default=0.0)


class DriftMonitor:
    """Sliding window of live image features -> PSI against the training histograms."""

    def __init__(
        self,
        training_stats: TrainingStats,
        window: int,
        *,
        registry: CollectorRegistry | None = None,
        on_features: Callable[[Mapping[str, npt.NDArray[np.floating]]], None] | None = None,
    ) -> None:
        self._on_features = on_features
        self._features = [name for name in FEATURE_NAMES if name in training_stats.features]
        self._edges = {
            n: np.asarray(training_stats.features[n].histogram.edges) for n in self._features
        }
        self._expected = {n: training_stats.features[n].histogram.counts for n in self._features}
        self._buffer = np.zeros((window, len(self._features)), dtype=np.float64)
        self._window = window
        self._next = 0
        self._filled = 0
        #: The raw input rows of the window, written in a ring by update (allocated on the first
        #: batch, with its width and dtype); _unabsorbed: rows written since the last _absorb.
        self._raw: npt.NDArray[np.floating] | None = None
        self._raw_next = 0
        self._unabsorbed = 0
        self._gauges: tuple[Gauge, Gauge, Gauge, Gauge] | None = None
        if registry is not None:
            self._gauges = (
                Gauge(
                    f"{PREFIX}_psi", "Population Stability Index of a per-image feature of "
                    "recent inputs vs the training set (<0.1 stable, >0.25 major shift).",
                    ["feature"], multiprocess_mode="livemax", registry=registry,
                ),
                Gauge(
                    f"{PREFIX}_psi_max", "Largest drift PSI over the features.",
                    multiprocess_mode="livemax", registry=registry,
                ),
                Gauge(
                    f"{PREFIX}_window_mean", "Mean of a per-image feature over the drift window.",
                    ["feature"], multiprocess_mode="mostrecent", registry=registry,
                ),
                Gauge(
                    f"{PREFIX}_window_images", "Images in the drift window (summed over workers).",
                    multiprocess_mode="livesum", registry=registry,
                ),
            )  # fmt: skip

    def update(self, pixels: npt.NDArray[np.floating]) -> None:
        """Add one batch of scaled inputs (rows x 784, values in [0, 1]) to the window.

        Cheap: one copy into the ring of raw rows (two where it wraps); the features are
        computed by the next :meth:`report`.
        """
        if pixels.ndim != 2 or pixels.shape[0] == 0 or not self._features:
            return
        raw, window = self._raw, self._window
        if raw is None or raw.shape[1] != pixels.shape[1] or raw.dtype != pixels.dtype:
            raw = self._raw = np.empty((window, pixels.shape[1]), dtype=pixels.dtype)
            self._raw_next = self._unabsorbed = 0
        n = pixels.shape[0]
        if n >= window:
            raw[:] = pixels[-window:]
            self._raw_next, self._unabsorbed = 0, window
            return
        start, end = self._raw_next, self._raw_next + n
        if end <= window:
            raw[start:end] = pixels
        else:
            first = window - start
            raw[start:] = pixels[:first]
            raw[: n - first] = pixels[first:]
        self._raw_next = end % window
        self._unabsorbed = min(window, self._unabsorbed + n)

    def _absorb(self) -> None:
        """Compute the features of the rows written since the last call into the ring buffer."""
        n, raw = self._unabsorbed, self._raw
        if not n or raw is None:
            return
        self._unabsorbed = 0
        start = self._raw_next - n
        # In arrival order: a view of the ring, or its two parts joined where it wrapped.
        pixels = (
            raw[start : self._raw_next]
            if start >= 0
            else np.concatenate((raw[start:], raw[: self._raw_next]))
        )
        computed = image_features(pixels)
        if self._on_features is not None:
            self._on_features(computed)
        values = np.column_stack([computed[n] for n in self._features])[-self._window :]
        n = values.shape[0]
        end = self._next + n
        if end <= self._window:
            self._buffer[self._next : end] = values
        else:
            first = self._window - self._next
            self._buffer[self._next :] = values[:first]
            self._buffer[: n - first] = values[first:]
        self._next = end % self._window
        self._filled = min(self._window, self._filled + n)

    def window_counts(self) -> dict[str, npt.NDArray[np.int64]]:
        """Histogram counts of this worker's window per feature, over the training bins."""
        self._absorb()
        window = self._buffer[: self._filled]
        return {
            name: np.histogram(np.clip(window[:, column], 0.0, 1.0), bins=self._edges[name])[0]
            for column, name in enumerate(self._features)
        }

    def window_counts_layout(self) -> dict[str, int]:
        """Bins per feature, in the order of :meth:`window_counts`."""
        return {name: len(self._edges[name]) - 1 for name in self._features}

    def report(self) -> DriftReport:
        """PSI and summary statistics of this worker's window (computed now)."""
        own = self.window_counts()
        window = self._buffer[: self._filled]
        means = {
            name: float(window[:, column].mean()) if self._filled else 0.0
            for column, name in enumerate(self._features)
        }
        return DriftReport(psi=self.scores(own), window_mean=means, window_images=self._filled)

    def scores(self, counts: Mapping[str, npt.ArrayLike]) -> dict[str, float]:
        """PSI per feature of histogram ``counts`` (this worker's, or the whole service's)."""
        return {name: psi(self._expected[name], counts[name]) for name in self._features}

    def publish(self) -> DriftReport:
        """Compute this worker's report and set the gauges (if a registry was given)."""
        result = self.report()
        if self._gauges is not None and result.window_images:
            self.publish_summary(result)
            self.publish_scores(result.psi)
        return result

    def publish_summary(self, result: DriftReport) -> None:
        """This worker's window means and size (the size gauge sums over workers)."""
        if self._gauges is not None and result.window_images:
            _, _, mean_gauge, images_gauge = self._gauges
            for name, mean in result.window_mean.items():
                mean_gauge.labels(name).set(mean)
            images_gauge.set(result.window_images)

    def publish_scores(self, scores: Mapping[str, float]) -> None:
        """Set the PSI gauges (thread-safe: touches no window state)."""
        if self._gauges is not None and scores:
            psi_gauge, max_gauge, _, _ = self._gauges
            for name, score in scores.items():
                psi_gauge.labels(name).set(score)
            max_gauge.set(max(scores.values()))
