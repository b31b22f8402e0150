"""The NDD index a process holds in memory (the API, the CLI), fed from PostgreSQL.

Built from ``ndd_hashes``/``ndd_frames`` at first use and refreshed incrementally: the checkpoint is
the highest ``seq`` loaded (the sink bumps ``seq`` on every insert or replacement), so a refresh
loads only newer rows; the row count is checked too and a mismatch (rows removed) rebuilds from
scratch. A refresh runs at most every ``ndd.refresh_interval_s`` and only on a query, so an idle
API costs nothing. One service per database per process (``shared_service``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from PIL import Image

from core import db
from core.imaging import load_image
from core.settings import Settings
from models.pdq import hashing as pdq
from models.pdq.features import LocalFeatures
from models.pdq.regions import Box, RegionHash
from models.pdq.video import FrameHash, hash_video
from producers.ingest import media_type_of, sniff_content_type
from retrieval.ndd.matcher import IndexedAsset, Match, Matcher, QueryImage, query_from_image
from sinks import lifecycle

log = logging.getLogger(__name__)

ALGORITHM = "pdq"
MODES = ("exact", "near", "similar")


@dataclass(frozen=True)
class Checkpoint:
    rows: int
    max_seq: int


@dataclass
class QueryMedia:
    """A query decoded and hashed: an uploaded file or an indexed asset."""

    media_type: str
    sha256: str | None
    image: QueryImage | None = None
    frames: list[FrameHash] | None = None
    interval_ms: int = 1000


class NddService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.matcher = Matcher(settings.ndd)
        self.checkpoint = Checkpoint(0, 0)
        self.checked_at = 0.0
        self._groups: tuple[Checkpoint, int | None, list[list[str]]] | None = None

    # -- loading --------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> Checkpoint:
        with self.lock:
            now = time.monotonic()
            if not force and now - self.checked_at < self.settings.ndd.refresh_interval_s:
                return self.checkpoint
            self.checked_at = now
            with db.connect(self.settings) as conn:
                # one snapshot for the count and the rows (the sink keeps writing meanwhile)
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                row = conn.execute(
                    "SELECT count(*) AS n, coalesce(max(seq), 0) AS s FROM ndd_hashes WHERE algorithm=%s",
                    (ALGORITHM,),
                ).fetchone()
                assert row is not None
                latest = Checkpoint(int(row["n"]), int(row["s"]))
                if latest == self.checkpoint:
                    return latest
                items, _ = self._load(conn, self.checkpoint.max_seq)
                matcher = self.matcher
                matcher.upsert(items)
                if len(matcher) != latest.rows or matcher.tombstones > 100_000:
                    # rows disappeared (or many replaced): rebuild from scratch in the same snapshot
                    items, _ = self._load(conn, 0)
                    matcher = Matcher(self.settings.ndd)
                    matcher.upsert(items)
            self.matcher = matcher
            self.checkpoint = latest
            log.info("ndd index: %d assets (seq %d, +%d)", latest.rows, latest.max_seq, len(items))
            return latest

    @staticmethod
    def _load(conn: db.Conn, since: int) -> tuple[list[IndexedAsset], int]:
        rows = conn.execute(
            """SELECT id, seq, asset_id, media_type, hash, quality, interval_ms, regions, features FROM ndd_hashes
               WHERE algorithm=%s AND seq > %s ORDER BY seq""", (ALGORITHM, since)).fetchall()
        frames: dict[int, list[FrameHash]] = {}
        video_ids = [r["id"] for r in rows if r["media_type"] == "video"]
        if video_ids:
            for f in conn.execute(
                """SELECT hash_id, t_ms, hash, quality, regions FROM ndd_frames WHERE hash_id = ANY(%s)
                   ORDER BY hash_id, t_ms""",
                (video_ids,),
            ):
                frames.setdefault(f["hash_id"], []).append(FrameHash(f["t_ms"], bytes(f["hash"]).hex(), f["quality"],
                                                                     regions_of(f["regions"])))
        items = [
            IndexedAsset(r["asset_id"], r["media_type"], bytes(r["hash"]).hex() if r["hash"] is not None else None,
                         r["quality"], tuple(frames.get(r["id"], ())), r["interval_ms"] or 1000,
                         regions_of(r["regions"]),
                         LocalFeatures.unpack(bytes(r["features"])) if r["features"] is not None else None)
            for r in rows
        ]
        return items, max((r["seq"] for r in rows), default=since)

    # -- queries --------------------------------------------------------------------------------
    def hash_upload(self, data: bytes) -> QueryMedia:
        """Hash an uploaded query file the way the pipeline hashes assets (raises MediaDecodeError)."""
        sha = hashlib.sha256(data).hexdigest()
        content_type = sniff_content_type(data[:64]) or "image/unknown"
        cfg = self.settings.ndd
        if media_type_of(content_type) == "video":
            vh = hash_video(data, fps=cfg.video_fps, max_frames=cfg.video_max_frames,
                            max_pixels=self.settings.limits.max_image_pixels)
            return QueryMedia("video", sha, frames=vh.frames, interval_ms=vh.interval_ms)
        img = load_image(data, self.settings.limits.max_image_pixels)
        return QueryMedia("image", sha, image=query_from_image(pdq.to_rgb_array(img), img.size, cfg))

    def query_of_asset(self, asset_id: str) -> QueryMedia:
        self.refresh()
        a = self.matcher.assets.get(asset_id)
        if a is None:
            raise LookupError(f"asset {asset_id} has no near-duplicate hash (yet)")
        if a.media_type == "video":
            return QueryMedia("video", asset_id, frames=list(a.frames), interval_ms=a.interval_ms)
        assert a.hash is not None
        return QueryMedia("image", asset_id, image=QueryImage(a.hash, a.quality, regions=list(a.regions),
                                                              features=a.features))

    def search(self, q: QueryMedia, mode: str = "near", threshold: int | None = None,
               exclude: str | None = None) -> list[Match]:
        """Near-duplicates of a query. ``exact``: the same bytes (sha256) or distance 0; ``near``: within
        the threshold (exact ones included). ``similar`` is not answered here (embedding kNN)."""
        if mode not in ("exact", "near"):
            raise ValueError(f"mode {mode!r} is not a hash mode (exact | near)")
        self.refresh()
        t = 0 if mode == "exact" else threshold
        with self.lock:
            if q.image is not None:
                matches = self.matcher.query_image(q.image, t, exclude=exclude)
            else:
                matches = self.matcher.query_video(q.frames or [], q.interval_ms, t, exclude=exclude)
            if q.sha256 and q.sha256 != exclude and q.sha256 in self.matcher.assets:
                known = next((m for m in matches if m.asset_id == q.sha256), None)
                if known is None:  # the very same file is in the archive: always exact
                    matches.insert(0, Match(q.sha256, self.matcher.assets[q.sha256].media_type, "exact", 0.0))
                else:
                    known.relation = "exact"
        if mode == "exact":
            matches = [m for m in matches if m.relation == "exact"]
        hidden = set(lifecycle.hidden_asset_ids(self.settings)) if matches else set()
        return [m for m in matches if m.asset_id not in hidden]  # under embargo (a killed one's rows are gone)

    def groups(self, threshold: int | None = None, min_size: int = 2) -> list[list[str]]:
        """Duplicate groups of the archive, cached until the index changes."""
        cp = self.refresh()
        with self.lock:
            if self._groups is not None and self._groups[0] == cp and self._groups[1] == threshold:
                all_groups = self._groups[2]
            else:
                all_groups = self.matcher.groups(threshold, min_size=2)
                self._groups = (cp, threshold, all_groups)
        hidden = set(lifecycle.hidden_asset_ids(self.settings))
        shown = [[a for a in g if a not in hidden] for g in all_groups]
        return [g for g in shown if len(g) >= min_size]

    def status(self) -> dict[str, Any]:
        cp = self.refresh()
        p = self.settings.ndd
        m = self.matcher
        return {"assets": cp.rows, "max_seq": cp.max_seq, "image_hashes": len(m.images),
                "video_frames": len(m.frames), "region_hashes": len(m.regions) + len(m.region_frames),
                "keypoint_pictures": len(m.features), "keypoint_descriptors": m.features.descriptors,
                "keypoint_index": m.features.kind, "index": p.index,
                "paths": ["hash"] + (["region"] if p.regions else []) + (["keypoints"] if p.keypoints else []),
                "thresholds": {"image": p.image_threshold, "frame": p.frame_threshold,
                               "frame_min_quality": p.min_quality, "image_min_quality": p.image_min_quality,
                               "min_inliers": p.min_inliers, "min_inliers_homography": p.min_inliers_homography}}


_SERVICES: dict[tuple[str, str], NddService] = {}
_SERVICES_LOCK = threading.Lock()


def shared_service(settings: Settings) -> NddService:
    """The process-wide service for this database (the API's routes and asset cards share it)."""
    key = (settings.postgres_dsn, settings.kafka.topic_prefix)
    with _SERVICES_LOCK:
        svc = _SERVICES.get(key)
        if svc is None:
            svc = _SERVICES[key] = NddService(settings)
        return svc


def regions_of(value: Any) -> tuple[RegionHash, ...]:
    """The ``regions`` jsonb column (or a payload's list) -> RegionHash tuples."""
    return tuple(RegionHash(Box(*r["box"]), r["hash"], int(r["quality"])) for r in (value or []))


def features_of(b64: str | None) -> LocalFeatures | None:
    return LocalFeatures.unpack(base64.b64decode(b64)) if b64 else None


def match_to_dict(m: Match) -> dict[str, Any]:
    """A match for the API: relation, the path that found it, its evidence and the shared region.

    ``distance`` is the PDQ Hamming distance of the evidence (hash and region paths: of the matched
    hashes; keypoints path: of the whole frames, for information); ``region`` boxes are fractions of each
    picture's width and height (x0, y0, x1, y1)."""
    out: dict[str, Any] = {"asset_id": m.asset_id, "media_type": m.media_type, "relation": m.relation,
                           "distance": round(m.distance, 2), "score": round(m.score, 4), "path": m.path}
    evidence: dict[str, Any] = {"distance": round(m.distance, 2)}
    if m.verified is not None:
        ver = m.verified
        evidence.update(inliers=ver.inliers, matches=ver.matches)
        out["transform"] = {"kind": ver.kind, "scale": ver.scale, "rotation_deg": ver.rotation_deg,
                            "matrix": ver.matrix}
        out["score"] = round(min(1.0, ver.inliers / 100), 4)  # keypoints: 100 inliers or more = 1.0
    out["evidence"] = evidence
    if m.media_type == "image" or m.path != "hash":
        out["region"] = {"query_box": m.query_box.as_list(), "ref_box": m.ref_box.as_list()}
    if m.frame_ms is not None:
        out["frame_ms"] = m.frame_ms
    if m.query_frame_ms is not None:
        out["query_frame_ms"] = m.query_frame_ms
    if m.video is not None:
        v = m.video
        out["video"] = {"offset_ms": v.offset_ms, "matched_query_frames": v.matched_query_frames,
                        "matched_ref_frames": v.matched_ref_frames, "query_share": round(v.query_share, 3),
                        "ref_share": round(v.ref_share, 3),
                        "ranges": [{"query_start_ms": r.query_start_ms, "query_end_ms": r.query_end_ms,
                                    "ref_start_ms": r.ref_start_ms, "ref_end_ms": r.ref_end_ms} for r in v.ranges]}
    return out


def image_query(img: Image.Image) -> QueryImage:
    return query_from_image(pdq.to_rgb_array(img), img.size)


__all__ = ["MODES", "NddService", "QueryMedia", "image_query", "match_to_dict", "shared_service"]
