"""Seeds of independent random streams, derived from one seed by name.

Two streams drawn from one integer seed must never be the same generator: an attack's
starting point drawn from the generator a defense drew its noise from predicts that
noise. `stream_seed(seed, "attack-restart", r)` and `stream_seed(seed, "defense", i)` hash
different inputs (SHA-256 of the stream's name, the seed and the position), so their
generators are unrelated for every seed and position, by construction. Attacks seed
their restarts here; `fedsim attack` seeds each target's defense here, under its own name.
"""

from __future__ import annotations

import hashlib


def stream_seed(seed: int, stream: str, *position: int) -> int:
    """A 63-bit seed for position `position` of stream `stream` of `seed`."""
    key = ":".join([stream, str(int(seed)), *(str(int(p)) for p in position)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1
