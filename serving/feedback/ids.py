"""Prediction ids that carry what a feedback join needs, authenticated with a keyed MAC.

An id is ``base64url(payload + tag)``: the payload packs the predicted label, the confidence,
the model version, the issue time (Unix seconds) and a random nonce; the tag is a 13-byte keyed
BLAKE2b of the payload (BLAKE2's keyed mode is a MAC; it costs ~1 µs per id here, against ~4 µs
for HMAC-SHA256, and every prediction gets one). 20 + 13 bytes encode to 44 characters with no
padding, so a whole response is encoded in one base64 call. Feedback can therefore reach any
worker or replica holding the same key and still be joined to its prediction with no lookup, and
a forged or altered id is refused. The nonce makes each id unique, so its tag is also the
duplicate-detection key.

Format 2, issued during a rollout when the other version computed the same row (a shadow
candidate, or stable behind a canary), also packs that version's label, its confidence (/255) and
its version: 26 + 13 bytes, 52 characters. A label sent for it then scores both versions
(serving/rollout_service.py). Format 1 ids stay valid.
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
_FORMAT_2 = 2
#: Format 1's fields, then the other version's label, confidence/255 and version.
_PAYLOAD_2 = struct.Struct(">BBHII8sBBI")
TAG_BYTES = 13
NONCE_BYTES = 8
_ID_BYTES = _PAYLOAD.size + TAG_BYTES
ID_CHARS = 4 * _ID_BYTES // 3  # 33 bytes: base64 without padding, ids concatenate cleanly
_ID2_BYTES = _PAYLOAD_2.size + TAG_BYTES
ID2_CHARS = 4 * _ID2_BYTES // 3  # 39 bytes, also a multiple of 3
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
    #: Format 2: what the other version of a rollout answered for the same row.
    second_label: int | None = None
    second_confidence: float | None = None
    second_version: int | None = None


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

    def issue_pairs(
        self,
        labels: Sequence[int],
        confidences: Sequence[float],
        model_version: str,
        second_labels: Sequence[int],
        second_confidences: Sequence[float],
        second_version: str,
    ) -> list[str]:
        """Format 2: one id per prediction that also names the other version's answer."""
        version = _version_number(model_version)
        other = _version_number(second_version)
        issued = int(time.time())
        nonces = os.urandom(NONCE_BYTES * len(labels))
        mac, pack = self._mac, _PAYLOAD_2.pack
        raws = []
        rows = zip(labels, confidences, second_labels, second_confidences, strict=True)
        for i, (label, confidence, second, second_confidence) in enumerate(rows):
            nonce = nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
            scaled = round(min(max(confidence, 0.0), 1.0) * 65535)
            scaled_second = round(min(max(second_confidence, 0.0), 1.0) * 255)
            payload = pack(
                _FORMAT_2, label, scaled, version, issued, nonce, second, scaled_second, other
            )
            tagger = mac.copy()
            tagger.update(payload)
            raws.append(payload + tagger.digest())
        text = base64.urlsafe_b64encode(b"".join(raws)).decode("ascii")
        return [text[i : i + ID2_CHARS] for i in range(0, len(text), ID2_CHARS)]

    def verify(self, prediction_id: str, now: float | None = None) -> IssuedPrediction | None:
        """The prediction an id names, or None if it is malformed, forged or expired."""
        size = len(prediction_id)
        if size not in (ID_CHARS, ID2_CHARS) or not _ALPHABET.issuperset(prediction_id):
            return None
        layout, expected = (_PAYLOAD, _FORMAT) if size == ID_CHARS else (_PAYLOAD_2, _FORMAT_2)
        raw = base64.urlsafe_b64decode(prediction_id)
        payload, tag = raw[: layout.size], raw[layout.size :]
        tagger = self._mac.copy()
        tagger.update(payload)
        if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, tagger.digest()):
            return None
        fields = layout.unpack(payload)
        fmt, label, scaled, version, issued = fields[:5]
        now = time.time() if now is None else now
        if fmt != expected or label >= self._classes:
            return None
        if issued < now - self.horizon_s or issued > now + CLOCK_SKEW_S:
            return None
        if fmt == _FORMAT:
            return IssuedPrediction(label, scaled / 65535, version, issued, tag)
        second, second_scaled, second_version = fields[6:]
        if second >= self._classes:
            return None
        return IssuedPrediction(
            label, scaled / 65535, version, issued, tag, second, second_scaled / 255, second_version
        )


def _version_number(model_version: str) -> int:
    """Model versions are the repository's positive integers (``<root>/<name>/<version>/``)."""
    return int(model_version) & 0xFFFFFFFF
