"""The near-duplicate matcher: every indexed image hash and good video frame in Hamming indexes,
and the rules that turn raw hash hits into near-duplicate matches.

- image vs image: the best Hamming distance over the query's hash (and, with ``dihedral``, its 7
  rotations/mirrors) within ``image_threshold``;
- image vs video: the image appears as a frame of the video (reported with the frame's time);
- video vs video: frames aligned by offset voting (retrieval/ndd/align.py), enough aligned frames
  covering enough of the shorter video, reported with the matching time ranges;
- video frames below ``min_quality`` never count (a shared black intro matches nothing); images
  below ``image_min_quality`` are only ever exact duplicates.

Three paths, tried in this order, each only for pictures the previous ones did not find (docs/ndd.md):
``hash`` (whole-frame PDQ, above), ``region`` (PDQ of the content area without uniform margins or of the
picture embedded in a screenshot, on either side: borders, letterboxes, screenshots) and ``keypoints``
(ORB descriptors vote for candidates, RANSAC verifies one transform: crops, overlays, rotations, tilt).
Video frames use the hash and region paths.

It holds no database state: the API's service (retrieval/ndd/service.py) feeds it from PostgreSQL,
the evaluation (benchmarks/ndd_eval.py) feeds it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from core.settings import NddSettings
from models.pdq import features as orb
from models.pdq import hashing as pdq
from models.pdq.regions import FULL, Box, RegionHash, region_hashes
from models.pdq.video import FrameHash
from retrieval.ndd.align import FrameHit, VideoMatch, align
from retrieval.ndd.features import FeatureIndex
from retrieval.ndd.index import HammingIndex
from retrieval.ndd.verify import Verified, VerifyParams, verify

Relation = Literal["exact", "near"]
Path = Literal["hash", "region", "keypoints"]


@dataclass(frozen=True)
class IndexedAsset:
    asset_id: str
    media_type: str  # image | video
    hash: str | None  # images
    quality: int
    frames: tuple[FrameHash, ...] = ()  # videos
    interval_ms: int = 1000
    regions: tuple[RegionHash, ...] = ()  # images: content area / embedded picture hashes
    features: orb.LocalFeatures | None = None  # images: ORB keypoints


@dataclass
class Match:
    asset_id: str
    media_type: str
    relation: Relation  # exact: distance 0 (or identical frames); near: within the threshold
    distance: float  # images: Hamming distance; videos: mean over the aligned frames
    frame_ms: int | None = None  # image<->video: where in the video the picture appears
    query_frame_ms: int | None = None  # video query matched to an image: which query frame
    video: VideoMatch | None = None
    path: Path = "hash"  # which path found it
    query_box: Box = FULL  # the shared region in the query ...
    ref_box: Box = FULL  # ... and in the matched asset (fractions of width/height)
    verified: Verified | None = None  # keypoints path: inliers, transform

    @property
    def score(self) -> float:
        """1.0 identical ... 0.0 at 256 bits apart (for sorting and display)."""
        return 1.0 - self.distance / pdq.BITS


@dataclass
class QueryImage:
    hash: str
    quality: int
    variants: list[str] = field(default_factory=list)  # dihedral hashes (first = hash)
    regions: list[RegionHash] = field(default_factory=list)
    features: orb.LocalFeatures | None = None


class Matcher:
    def __init__(self, params: NddSettings) -> None:
        self.p = params
        self.images: HammingIndex[str] = HammingIndex(params.index)
        self.frames: HammingIndex[tuple[str, int]] = HammingIndex(params.index)
        # content-region hashes: of pictures (key: asset, region number) and of video frames (asset, t_ms)
        self.regions: HammingIndex[tuple[str, int]] = HammingIndex(params.index)
        self.region_frames: HammingIndex[tuple[str, int]] = HammingIndex(params.index)
        self.features = FeatureIndex()
        self.verify_params = VerifyParams(min_inliers=params.min_inliers,
                                          min_inliers_homography=params.min_inliers_homography)
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
        rg_keys: list[tuple[str, int]] = []
        rg_hashes: list[str] = []
        rf_keys: list[tuple[str, int]] = []
        rf_hashes: list[str] = []
        feats: list[tuple[str, orb.LocalFeatures]] = []
        for a in items:
            if a.asset_id in self.assets:
                self.remove(a.asset_id)
            self.assets[a.asset_id] = a
            if a.media_type == "video":
                good = [f for f in a.frames if f.quality >= self.p.min_quality]
                self.good_frames[a.asset_id] = len(good)
                fr_keys += [(a.asset_id, f.t_ms) for f in good]
                fr_hashes += [f.hash for f in good]
                for f in good:  # a good frame's content area (letterbox removed), if good itself
                    for r in f.regions:
                        if r.quality >= self.p.min_quality:
                            rf_keys.append((a.asset_id, f.t_ms))
                            rf_hashes.append(r.hash)
            elif a.hash is not None:
                # low-quality images stay indexed (exact matches) but are flagged at query time
                img_keys.append(a.asset_id)
                img_hashes.append(a.hash)
                for i, r in enumerate(a.regions):
                    if r.quality >= self.p.image_min_quality:
                        rg_keys.append((a.asset_id, i))
                        rg_hashes.append(r.hash)
                if a.features is not None:
                    feats.append((a.asset_id, a.features))
        self.images.add(pdq.codes(img_hashes), img_keys)
        self.frames.add(pdq.codes(fr_hashes), fr_keys)
        self.regions.add(pdq.codes(rg_hashes), rg_keys)
        self.region_frames.add(pdq.codes(rf_hashes), rf_keys)
        self.features.add(feats)

    def remove(self, asset_id: str) -> None:
        a = self.assets.pop(asset_id, None)
        if a is None:
            return
        self.images.remove(asset_id)
        for i in range(len(a.regions)):
            self.regions.remove((asset_id, i))
        for f in a.frames:
            self.frames.remove((asset_id, f.t_ms))
            self.region_frames.remove((asset_id, f.t_ms))
        self.features.remove(asset_id)
        self.good_frames.pop(asset_id, None)

    @property
    def tombstones(self) -> int:
        return (self.images.tombstones + self.frames.tombstones + self.regions.tombstones
                + self.region_frames.tombstones + self.features.tombstones // 64)

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
        found = {m.asset_id for m in out}
        q_regions = [r for r in q.regions if r.quality >= self.p.image_min_quality] if t > 0 else []
        if self.p.regions and t > 0 and q.quality >= self.p.image_min_quality:
            out += self._region_matches(q, q_regions, t, exclude, found)
            found |= {m.asset_id for m in out}
        if self.p.keypoints and t > 0 and q.features is not None:
            out += self._keypoint_matches(q, exclude, found)
        if with_videos and q.quality >= self.p.min_quality:
            ft = min(t, self.p.frame_threshold)
            in_video: dict[str, tuple[int, int, Box, Path]] = {}
            searches: list[tuple[HammingIndex[tuple[str, int]], list[str], list[Box]]] = [
                (self.frames, hashes, [FULL] * len(hashes))]
            if self.p.regions and t > 0:
                searches += [(self.frames, [r.hash for r in q_regions], [r.box for r in q_regions]),
                             (self.region_frames, [q.hash], [FULL])]
            for index, qh, qboxes in searches:
                for qbox, frow in zip(qboxes, index.range_search(pdq.codes(qh), ft), strict=True):
                    for (asset, t_ms), d in frow:
                        if asset != exclude and (asset not in in_video or d < in_video[asset][0]):
                            via: Path = "hash" if index is self.frames and qbox == FULL else "region"
                            in_video[asset] = (d, t_ms, qbox, via)
            out += [Match(a, "video", "exact" if d == 0 and via == "hash" else "near", d, frame_ms=ms, path=via,
                          query_box=qbox) for a, (d, ms, qbox, via) in in_video.items()]
        order = {"hash": 0, "region": 1, "keypoints": 2}
        out.sort(key=lambda m: (order[m.path], m.distance if m.verified is None else -m.verified.inliers,
                                m.asset_id))
        return out

    def _region_matches(self, q: QueryImage, q_regions: list[RegionHash], t: int, exclude: str | None,
                        found: set[str]) -> list[Match]:
        """Content area against whole picture, whole picture against content area, area against area."""
        best: dict[str, tuple[int, Box, Box]] = {}

        def consider(asset: str, d: int, qbox: Box, rbox: Box) -> None:
            if asset == exclude or asset in found or self.assets[asset].quality < self.p.image_min_quality:
                return
            if asset not in best or d < best[asset][0]:
                best[asset] = (d, qbox, rbox)

        if q_regions:
            for r, row in zip(q_regions, self.images.range_search(pdq.codes([r.hash for r in q_regions]), t),
                              strict=True):
                for asset, d in row:
                    consider(asset, d, r.box, FULL)
        mine = [(FULL, q.hash)] + [(r.box, r.hash) for r in q_regions]
        rrows = self.regions.range_search(pdq.codes([h for _b, h in mine]), t)
        for (qbox, _h), rrow in zip(mine, rrows, strict=True):
            for (ref, i), d in rrow:
                consider(ref, d, qbox, self.assets[ref].regions[i].box)
        return [Match(a, "image", "near", d, path="region", query_box=qb, ref_box=rb)
                for a, (d, qb, rb) in best.items()]

    def _keypoint_matches(self, q: QueryImage, exclude: str | None, found: set[str]) -> list[Match]:
        """ORB descriptors vote for candidates; a candidate is a near-duplicate when RANSAC finds one
        transform that enough keypoints agree on."""
        assert q.features is not None
        skip = set(found) | ({exclude} if exclude else set())
        out: list[Match] = []
        for asset, _votes in self.features.candidates(q.features.desc, self.p.keypoint_candidates,
                                                      self.p.keypoint_min_votes, skip):
            a = self.assets[asset]
            if a.features is None:
                continue
            v = verify(q.features, a.features, self.verify_params)
            if v is None:
                continue
            d = pdq.hamming(q.hash, a.hash) if a.hash else pdq.BITS
            out.append(Match(asset, "image", "near", float(d), path="keypoints", query_box=v.query_box,
                             ref_box=v.ref_box, verified=v))
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
        if self.p.regions and t > 0:
            # letterboxed / bordered copies: a frame's content area against whole frames, and the other way
            qr = [(f, r) for f in good for r in f.regions if r.quality >= self.p.min_quality]
            hits += [FrameHit(f.t_ms, asset, ref_ms, d, region=True)
                     for (f, _r), row in zip(qr, self.frames.range_search(pdq.codes([r.hash for _f, r in qr]), t),
                                             strict=True)
                     for (asset, ref_ms), d in row if asset != exclude]
            hits += [FrameHit(f.t_ms, asset, ref_ms, d, region=True)
                     for f, row in zip(good, self.region_frames.range_search(q_codes, t), strict=True)
                     for (asset, ref_ms), d in row if asset != exclude]
        out: list[Match] = []
        for vm in align(hits, len(good), self.good_frames, max(interval_ms, 1)):
            need = max(1, min(self.p.video_min_frames, len(good), self.good_frames.get(vm.asset_id, 0)))
            if vm.matched_query_frames < need or vm.share < self.p.video_min_share:
                continue
            exact = vm.mean_distance == 0 and vm.query_share == 1.0 and vm.ref_share == 1.0 and not vm.via_region
            out.append(Match(vm.asset_id, "video", "exact" if exact else "near", vm.mean_distance, video=vm,
                             path="region" if vm.via_region else "hash"))
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
        return self.query_image(QueryImage(a.hash, a.quality, regions=list(a.regions), features=a.features),
                                threshold, exclude=asset_id)

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


def query_from_image(rgb: np.ndarray, orig_size: tuple[int, int] | None = None,
                     params: NddSettings | None = None) -> QueryImage:
    """A query picture: its hash and dihedral variants, its content regions and its ORB features."""
    p = params or NddSettings()
    h, q = pdq.hash_array(rgb)
    feats = orb.extract(rgb, p.query_keypoints, grid=True, orig_size=orig_size,
                        detect=3 * p.query_keypoints) if p.keypoints else None
    return QueryImage(h, q, pdq.dihedral_hashes(rgb), region_hashes(rgb) if p.regions else [], feats)
