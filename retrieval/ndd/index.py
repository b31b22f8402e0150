"""In-memory Hamming index over 256-bit codes (faiss binary indexes), with keys and tombstones.

Why a flat (exhaustive) index: measured in benchmarks/ndd_eval.py, faiss ``IndexBinaryFlat``
answers a radius query over 1M PDQ codes in a few milliseconds on one core (popcount over 32 MB),
exactly; multi-index hashing (``IndexBinaryMultiHash``) was slower at that size and takes
seconds to build. Positions are append-only; a replaced entry is tombstoned and skipped, and the
owner rebuilds when tombstones pile up.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

import faiss
import numpy as np

from models.pdq.hashing import BITS, NBYTES

K = TypeVar("K", bound=Hashable)

KINDS = ("flat", "mih")
MIH_SUBSTRINGS = 16  # multi-index hashing: 16 tables of 16-bit substrings


def make_faiss_index(kind: str = "flat", radius_hint: int = 31) -> faiss.IndexBinary:
    if kind == "flat":
        return faiss.IndexBinaryFlat(BITS)
    if kind == "mih":
        idx = faiss.IndexBinaryMultiHash(BITS, MIH_SUBSTRINGS, BITS // MIH_SUBSTRINGS)
        idx.nflip = radius_hint // MIH_SUBSTRINGS  # pigeonhole: exact for distances <= radius_hint
        return idx
    raise ValueError(f"unknown index kind {kind!r}; choose from {KINDS}")


class HammingIndex(Generic[K]):
    def __init__(self, kind: str = "flat") -> None:
        self.kind = kind
        self.index = make_faiss_index(kind)
        self.keys: list[K | None] = []  # position -> key (None: tombstone)
        self.positions: dict[K, list[int]] = {}
        self.tombstones = 0

    def __len__(self) -> int:
        return len(self.keys) - self.tombstones

    def add(self, codes: np.ndarray, keys: list[K]) -> None:
        if len(keys) == 0:
            return
        assert codes.shape == (len(keys), NBYTES) and codes.dtype == np.uint8
        self.index.add(np.ascontiguousarray(codes))
        for k in keys:
            self.positions.setdefault(k, []).append(len(self.keys))
            self.keys.append(k)

    def remove(self, key: K) -> None:
        for p in self.positions.pop(key, []):
            self.keys[p] = None
            self.tombstones += 1

    def range_search(self, queries: np.ndarray, radius: int) -> list[list[tuple[K, int]]]:
        """For each query code, every (key, distance) with distance <= radius."""
        if len(queries) == 0:
            return []
        if not self.keys:
            return [[] for _ in range(len(queries))]
        if isinstance(self.index, faiss.IndexBinaryMultiHash):
            # pigeonhole: some 16-bit substring differs in <= radius // 16 bits -> exact for this radius
            self.index.nflip = radius // (BITS // MIH_SUBSTRINGS)
        # faiss returns distances strictly below its radius argument
        lims, dist, pos = self.index.range_search(np.ascontiguousarray(queries, dtype=np.uint8), radius + 1)
        out: list[list[tuple[K, int]]] = []
        for i in range(len(queries)):
            row: list[tuple[K, int]] = []
            for j in range(lims[i], lims[i + 1]):
                key = self.keys[int(pos[j])]
                if key is not None:
                    row.append((key, int(dist[j])))
            out.append(row)
        return out
