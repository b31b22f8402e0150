"""Candidate generation for the keypoint path: every indexed picture's ORB descriptors in one faiss
binary index; a query's descriptors vote for the pictures their nearest neighbours belong to, and the
most voted pictures go on to geometric verification (retrieval/ndd/verify.py).

Descriptor voting survives crops, borders, screenshots, overlays and rotations (each keypoint is
local), which a whole-frame hash does not. Small archives use an exact flat index; past
``ivf_min`` descriptors the index becomes an inverted file (``IndexBinaryIVF``, its coarse
quantizer trained once on a sample) probed in ``nprobe`` lists: exhaustive kNN over 100k pictures x
128 descriptors would cost seconds per query on one core (benchmarks/ndd_eval.py measures both).
Replaced pictures are tombstoned, like retrieval/ndd/index.py.
"""

from __future__ import annotations

from collections import Counter

import faiss
import numpy as np

from models.pdq.features import LocalFeatures

BITS = 256
MAX_DESCRIPTOR_DISTANCE = 64  # of 256 bits: beyond this a nearest neighbour is no evidence


class FeatureIndex:
    def __init__(self, ivf_min: int = 200_000, nlist: int = 1024, nprobe: int = 8, knn: int = 4) -> None:
        self.ivf_min, self.nlist, self.nprobe, self.knn = ivf_min, nlist, nprobe, knn
        self.index: faiss.IndexBinary = faiss.IndexBinaryFlat(BITS)
        self.owner: list[str | None] = []  # descriptor position -> picture (None: tombstone)
        self.features: dict[str, LocalFeatures] = {}
        self.positions: dict[str, tuple[int, int]] = {}
        self.tombstones = 0

    def __len__(self) -> int:
        return len(self.features)

    @property
    def descriptors(self) -> int:
        return len(self.owner) - self.tombstones

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, faiss.IndexBinaryIVF) else "flat"

    def add(self, items: list[tuple[str, LocalFeatures]]) -> None:
        items = [(k, f) for k, f in items if len(f)]
        if not items:
            return
        for k, _f in items:
            self.remove(k)
        codes = np.ascontiguousarray(np.concatenate([f.desc for _k, f in items]), dtype=np.uint8)
        for k, f in items:
            self.features[k] = f
            self.positions[k] = (len(self.owner), len(self.owner) + len(f))
            self.owner.extend([k] * len(f))
        if self.kind == "flat" and len(self.owner) >= self.ivf_min:
            self._to_ivf(codes)
        else:
            self.index.add(codes)

    def _to_ivf(self, new_codes: np.ndarray) -> None:
        """Switch to an inverted file: train the coarse quantizer on a sample, then hold every code."""
        xb = self.index.xb  # type: ignore[attr-defined]
        old = faiss.vector_to_array(xb).reshape(-1, BITS // 8) if self.index.ntotal else None
        codes = new_codes if old is None else np.concatenate([old, new_codes])
        rng = np.random.default_rng(0)
        sample = codes[rng.choice(len(codes), min(len(codes), 40 * self.nlist), replace=False)]
        ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(BITS), BITS, self.nlist)
        ivf.train(np.ascontiguousarray(sample))
        ivf.nprobe = self.nprobe
        ivf.add(np.ascontiguousarray(codes))
        self.index = ivf

    def remove(self, key: str) -> None:
        span = self.positions.pop(key, None)
        self.features.pop(key, None)
        if span is not None:
            for p in range(*span):
                self.owner[p] = None
            self.tombstones += span[1] - span[0]

    def candidates(self, desc: np.ndarray, limit: int, min_votes: int,
                   exclude: set[str] | None = None) -> list[tuple[str, int]]:
        """The pictures most voted for by the query's descriptors: (key, votes), at most ``limit``; a
        query descriptor votes once per picture among its ``knn`` nearest within the distance bound."""
        if len(desc) == 0 or self.index.ntotal == 0:
            return []
        dist, pos = self.index.search(np.ascontiguousarray(desc, dtype=np.uint8), self.knn)
        votes: Counter[str] = Counter()
        for drow, prow in zip(dist, pos, strict=True):
            seen: set[str] = set()
            for d, p in zip(drow, prow, strict=True):
                if p < 0 or d > MAX_DESCRIPTOR_DISTANCE:
                    continue
                k = self.owner[int(p)]
                if k is not None and k not in seen:
                    seen.add(k)
                    votes[k] += 1
        skip = exclude or set()
        ranked = [(k, v) for k, v in votes.most_common() if v >= min_votes and k not in skip]
        return ranked[:limit]
