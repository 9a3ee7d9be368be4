"""The one train/val/test split: a sample's split follows from a hash of its key, never from order.

Every layer calls :func:`split_for_key`: the database stores it on each sample (annotation imports,
``Sample.split``), so every snapshot row inherits it; the synthetic conditions folders and the
research loop use it for condition ids. A second hash (an earlier one read eight bytes of the digest
instead of four) put 337 of 1,000 keys in another split, so a condition could train the policy on
one side and test the reward model on the other.
"""

from __future__ import annotations

import hashlib

#: The splits, in order, and their cumulative percent thresholds (80 / 10 / 10).
SPLITS: tuple[str, ...] = ("train", "val", "test")
_THRESHOLDS = (("train", 80), ("val", 90), ("test", 100))


def split_for_key(key: str) -> str:
    """Deterministic train/val/test split for a sample key (80/10/10), never per pair.

    The bucket is the first 32 bits of sha256(key) mod 100: what the database has used for every
    stored sample, so it cannot change without moving samples between splits.
    """
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    for name, upper in _THRESHOLDS:
        if bucket < upper:
            return name
    return "test"  # unreachable: the last threshold is 100
