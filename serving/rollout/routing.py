"""Which version answers a request during a canary: sticky per client, by a hash.

A client that sends an id (a header such as ``X-Client-ID``, or the authenticated principal)
is hashed with the rollout's salt into a bucket in [0, 1); it gets the candidate when its
bucket is below the current share. So a client sees one version throughout a step, never a mix
that would make its answers flip between requests; a step that widens the share keeps every
client already on the candidate there (their bucket is still below the larger share); and the
salt (``RolloutState.salt``) changes with each rollout, so that the next candidate is tried on
different clients. A request without an id is routed by a fresh random draw.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

_SCALE = float(2**64)


def bucket(client_id: str, salt: str) -> float:
    """The client's position in [0, 1) for this rollout: the first 8 bytes of BLAKE2b over
    the salt (length-prefixed, so no (salt, id) pair hashes like another) and the id."""
    salted = salt.encode("utf-8")
    digest = hashlib.blake2b(digest_size=8, person=b"rollout-canary")
    digest.update(len(salted).to_bytes(4, "big") + salted + client_id.encode("utf-8"))
    return int.from_bytes(digest.digest(), "big") / _SCALE


def to_candidate(
    client_id: str | None,
    share: float,
    salt: str,
    draw: Callable[[], float] = random.random,
) -> bool:
    """Whether the candidate answers this request (``share`` 0: never; 1: always)."""
    if share <= 0.0:
        return False
    if share >= 1.0:
        return True
    position = draw() if not client_id else bucket(client_id, salt)
    return position < share
