"""Prediction ids that carry what a feedback join needs, authenticated with a keyed MAC.

An id is ``base64url(payload + tag)``: the payload packs the predicted label, the confidence,
the model version, the issue time (Unix seconds) and a random nonce; the tag is a 13-byte keyed
BLAKE2b of the payload (BLAKE2's keyed mode is a MAC; it costs ~1 µs per id here, against ~4 µs
for HMAC-SHA256, and every prediction gets one). 20 + 13 bytes encode to 44 characters with no
padding, so a whole response is encoded in one base64 call. Feedback can therefore reach any
worker or replica holding the same key and still be joined to its prediction with no lookup, and
a forged or altered id is refused. The nonce makes each id unique, so its tag is also the
duplicate-detection key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

_FORMAT = 1
_PAYLOAD = struct.Struct(">BBHII8s")  # format, label, confidence/65535, version, issued, nonce
TAG_BYTES = 13
NONCE_BYTES = 8
_ID_BYTES = _PAYLOAD.size + TAG_BYTES
ID_CHARS = 4 * _ID_BYTES // 3  # 33 bytes: base64 without padding, ids concatenate cleanly
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
#: Ids dated this far in the future (clock skew between replicas) are still accepted.
CLOCK_SKEW_S = 60


@dataclass(frozen=True, slots=True)
class IssuedPrediction:
    """What a valid id says about its prediction; ``tag`` identifies it (duplicates)."""

    label: int
    confidence: float
    model_version: int
    issued_at: int
    tag: bytes


class PredictionIds:
    """Issues and verifies ids with one key; ``horizon_s`` is how long an id stays valid."""

    def __init__(self, key: bytes, horizon_s: float, classes: int = 10) -> None:
        if not key:
            raise ValueError("the feedback key must not be empty")
        # BLAKE2b takes keys up to 64 bytes: any key text is hashed to 32 first.
        self._mac = hashlib.blake2b(key=hashlib.sha256(key).digest(), digest_size=TAG_BYTES)
        self.horizon_s = horizon_s
        self._classes = classes

    def issue(
        self, labels: Sequence[int], confidences: Sequence[float], model_version: str
    ) -> list[str]:
        """One id per prediction, in order (one random read for the whole response)."""
        version = _version_number(model_version)
        issued = int(time.time())
        nonces = os.urandom(NONCE_BYTES * len(labels))
        mac, pack = self._mac, _PAYLOAD.pack
        raws = []
        for i, (label, confidence) in enumerate(zip(labels, confidences, strict=True)):
            nonce = nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
            scaled = round(min(max(confidence, 0.0), 1.0) * 65535)
            payload = pack(_FORMAT, label, scaled, version, issued, nonce)
            tagger = mac.copy()
            tagger.update(payload)
            raws.append(payload + tagger.digest())
        text = base64.urlsafe_b64encode(b"".join(raws)).decode("ascii")
        return [text[i : i + ID_CHARS] for i in range(0, len(text), ID_CHARS)]

    def verify(self, prediction_id: str, now: float | None = None) -> IssuedPrediction | None:
        """The prediction an id names, or None if it is malformed, forged or expired."""
        if len(prediction_id) != ID_CHARS or not _ALPHABET.issuperset(prediction_id):
            return None
        raw = base64.urlsafe_b64decode(prediction_id)
        payload, tag = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        tagger = self._mac.copy()
        tagger.update(payload)
        if len(raw) != _ID_BYTES or not hmac.compare_digest(tag, tagger.digest()):
            return None
        fmt, label, scaled, version, issued, _ = _PAYLOAD.unpack(payload)
        now = time.time() if now is None else now
        if fmt != _FORMAT or label >= self._classes:
            return None
        if issued < now - self.horizon_s or issued > now + CLOCK_SKEW_S:
            return None
        return IssuedPrediction(label, scaled / 65535, version, issued, tag)


def _version_number(model_version: str) -> int:
    """Model versions are the repository's positive integers (``<root>/<name>/<version>/``)."""
    return int(model_version) & 0xFFFFFFFF
