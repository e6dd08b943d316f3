"""Which books shoppers and watchers pick: a few best-sellers and a long tail (Zipf)."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from collections.abc import Sequence

ZIPF_EXPONENT = 1.1


class Popularity:
    """Picks SKUs with probability ~ 1 / rank**s. Every load process ranks the same
    catalog the same way (a seed from the SKUs), so the best-sellers agree."""

    def __init__(self, skus: Sequence[str], exponent: float = ZIPF_EXPONENT):
        if not skus:
            raise ValueError("the shop lists no books")
        seed = int.from_bytes(hashlib.sha256(",".join(sorted(skus)).encode()).digest()[:8], "big")
        self.ranked = list(sorted(skus))
        random.Random(seed).shuffle(self.ranked)
        weights = [1 / (rank + 1) ** exponent for rank in range(len(self.ranked))]
        self._cumulative = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> str:
        point = rng.random() * self._cumulative[-1]
        return self.ranked[min(bisect.bisect_left(self._cumulative, point),
                               len(self.ranked) - 1)]

    def pick_distinct(self, rng: random.Random, count: int) -> list[str]:
        """Up to `count` different SKUs (fewer if the catalog is smaller)."""
        count = min(count, len(self.ranked))
        chosen: dict[str, None] = {}
        while len(chosen) < count:
            chosen[self.pick(rng)] = None
        return list(chosen)
