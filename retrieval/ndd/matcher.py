"""The near-duplicate matcher: every indexed image hash and good video frame in Hamming indexes,
and the rules that turn raw hash hits into near-duplicate matches.

- image vs image: the best Hamming distance over the query's hash (and, with ``dihedral``, its 7
  rotations/mirrors) within ``image_threshold``;
- image vs video: the image appears as a frame of the video (reported with the frame's time);
- video vs video: frames aligned by offset voting (retrieval/ndd/align.py), enough aligned frames
  covering enough of the shorter video, reported with the matching time ranges;
- video frames below ``min_quality`` never count (a shared black intro matches nothing); images
  below ``image_min_quality`` are only ever exact duplicates.

It holds no database state: the API's service (retrieval/ndd/service.py) feeds it from PostgreSQL,
the evaluation (benchmarks/ndd_eval.py) feeds it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from core.settings import NddSettings
from models.pdq import hashing as pdq
from models.pdq.video import FrameHash
from retrieval.ndd.align import FrameHit, VideoMatch, align
from retrieval.ndd.index import HammingIndex

Relation = Literal["exact", "near"]


@dataclass(frozen=True)
class IndexedAsset:
    asset_id: str
    media_type: str  # image | video
    hash: str | None  # images
    quality: int
    frames: tuple[FrameHash, ...] = ()  # videos
    interval_ms: int = 1000


@dataclass
class Match:
    asset_id: str
    media_type: str
    relation: Relation  # exact: distance 0 (or identical frames); near: within the threshold
    distance: float  # images: Hamming distance; videos: mean over the aligned frames
    frame_ms: int | None = None  # image<->video: where in the video the picture appears
    query_frame_ms: int | None = None  # video query matched to an image: which query frame
    video: VideoMatch | None = None

    @property
    def score(self) -> float:
        """1.0 identical ... 0.0 at 256 bits apart (for sorting and display)."""
        return 1.0 - self.distance / pdq.BITS


@dataclass
class QueryImage:
    hash: str
    quality: int
    variants: list[str] = field(default_factory=list)  # dihedral hashes (first = hash)


class Matcher:
    def __init__(self, params: NddSettings) -> None:
        self.p = params
        self.images: HammingIndex[str] = HammingIndex(params.index)
        self.frames: HammingIndex[tuple[str, int]] = HammingIndex(params.index)
        self.assets: dict[str, IndexedAsset] = {}
        self.good_frames: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.assets)

    # -- indexing -------------------------------------------------------------------------------
    def upsert(self, items: list[IndexedAsset]) -> None:
        """Add (or replace) assets; batched so that a rebuild of 1M hashes is one faiss add."""
        img_keys: list[str] = []
        img_hashes: list[str] = []
        fr_keys: list[tuple[str, int]] = []
        fr_hashes: list[str] = []
        for a in items:
            if a.asset_id in self.assets:
                self.remove(a.asset_id)
            self.assets[a.asset_id] = a
            if a.media_type == "video":
                good = [f for f in a.frames if f.quality >= self.p.min_quality]
                self.good_frames[a.asset_id] = len(good)
                fr_keys += [(a.asset_id, f.t_ms) for f in good]
                fr_hashes += [f.hash for f in good]
            elif a.hash is not None:
                # low-quality images stay indexed (exact matches) but are flagged at query time
                img_keys.append(a.asset_id)
                img_hashes.append(a.hash)
        self.images.add(pdq.codes(img_hashes), img_keys)
        self.frames.add(pdq.codes(fr_hashes), fr_keys)

    def remove(self, asset_id: str) -> None:
        a = self.assets.pop(asset_id, None)
        if a is None:
            return
        self.images.remove(asset_id)
        for f in a.frames:
            self.frames.remove((asset_id, f.t_ms))
        self.good_frames.pop(asset_id, None)

    # -- queries --------------------------------------------------------------------------------
    def query_image(self, q: QueryImage, threshold: int | None = None, exclude: str | None = None,
                    with_videos: bool = True) -> list[Match]:
        t = self.p.image_threshold if threshold is None else threshold
        if q.quality < self.p.image_min_quality:
            t = 0  # a uniform/black picture is only ever an exact duplicate, never "near"
        hashes = q.variants if (self.p.dihedral and q.variants and t > 0) else [q.hash]
        best: dict[str, int] = {}
        for row in self.images.range_search(pdq.codes(hashes), t):
            for asset, d in row:
                if asset != exclude and d < best.get(asset, 1 << 30):
                    best[asset] = d
        out = [Match(a, "image", "exact" if d == 0 else "near", d) for a, d in best.items()
               if self.assets[a].quality >= self.p.image_min_quality or d == 0]
        if with_videos and q.quality >= self.p.min_quality:
            ft = min(t, self.p.frame_threshold)
            in_video: dict[str, tuple[int, int]] = {}
            for frow in self.frames.range_search(pdq.codes(hashes), ft):
                for (asset, t_ms), d in frow:
                    if asset != exclude and (asset not in in_video or d < in_video[asset][0]):
                        in_video[asset] = (d, t_ms)
            out += [Match(a, "video", "exact" if d == 0 else "near", d, frame_ms=ms) for a, (d, ms) in in_video.items()]
        out.sort(key=lambda m: (m.distance, m.asset_id))
        return out

    def query_video(self, frames: list[FrameHash], interval_ms: int, threshold: int | None = None,
                    exclude: str | None = None, with_images: bool = True) -> list[Match]:
        t = self.p.frame_threshold if threshold is None else threshold
        good = [f for f in frames if f.quality >= self.p.min_quality]
        if not good:
            return []
        q_codes = pdq.codes([f.hash for f in good])
        hits = [FrameHit(f.t_ms, asset, ref_ms, d)
                for f, row in zip(good, self.frames.range_search(q_codes, t), strict=True)
                for (asset, ref_ms), d in row if asset != exclude]
        out: list[Match] = []
        for vm in align(hits, len(good), self.good_frames, max(interval_ms, 1)):
            need = max(1, min(self.p.video_min_frames, len(good), self.good_frames.get(vm.asset_id, 0)))
            if vm.matched_query_frames < need or vm.share < self.p.video_min_share:
                continue
            exact = vm.mean_distance == 0 and vm.query_share == 1.0 and vm.ref_share == 1.0
            out.append(Match(vm.asset_id, "video", "exact" if exact else "near", vm.mean_distance, video=vm))
        if with_images:
            pictures: dict[str, tuple[int, int]] = {}
            for f, row in zip(good, self.images.range_search(q_codes, min(t, self.p.image_threshold)), strict=True):
                for asset, d in row:
                    if asset != exclude and self.assets[asset].quality >= self.p.image_min_quality and (
                            asset not in pictures or d < pictures[asset][0]):
                        pictures[asset] = (d, f.t_ms)
            out += [Match(a, "image", "exact" if d == 0 else "near", d, query_frame_ms=ms)
                    for a, (d, ms) in pictures.items()]
        out.sort(key=lambda m: (m.relation != "exact", m.distance, m.asset_id))
        return out

    def query_asset(self, asset_id: str, threshold: int | None = None) -> list[Match]:
        a = self.assets[asset_id]
        if a.media_type == "video":
            return self.query_video(list(a.frames), a.interval_ms, threshold, exclude=asset_id)
        assert a.hash is not None
        return self.query_image(QueryImage(a.hash, a.quality), threshold, exclude=asset_id)

    # -- duplicate groups -----------------------------------------------------------------------
    def groups(self, threshold: int | None = None, min_size: int = 2) -> list[list[str]]:
        """Connected components of the near-duplicate graph (union-find), largest first."""
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            parent.setdefault(x, x)
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        def union(a: str, b: str) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

        images = [a for a in self.assets.values() if a.media_type == "image" and a.hash is not None
                  and a.quality >= self.p.image_min_quality]
        t = self.p.image_threshold if threshold is None else threshold
        if images:
            # one batched range search over all image hashes (faiss parallelises it)
            rows = self.images.range_search(pdq.codes([a.hash for a in images if a.hash]), t)
            for a, row in zip(images, rows, strict=True):
                for b, _d in row:
                    if b != a.asset_id and self.assets[b].quality >= self.p.image_min_quality:
                        union(a.asset_id, b)
        for a in self.assets.values():
            if a.media_type == "video":
                for m in self.query_video(list(a.frames), a.interval_ms, threshold, exclude=a.asset_id):
                    union(a.asset_id, m.asset_id)
        members: dict[str, list[str]] = {}
        for x in parent:
            members.setdefault(find(x), []).append(x)
        groups = [sorted(g) for g in members.values() if len(g) >= min_size]
        groups.sort(key=lambda g: (-len(g), g[0]))
        return groups


def query_from_image(rgb: np.ndarray) -> QueryImage:
    h, q = pdq.hash_array(rgb)
    return QueryImage(h, q, pdq.dihedral_hashes(rgb))
