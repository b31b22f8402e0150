"""Geometric verification: are two pictures the same picture under one transform?

The candidate's keypoints are matched to the query's (brute-force Hamming, k=2, Lowe's ratio test), then
RANSAC fits ONE similarity transform (scale, rotation, translation: crops, borders, screenshots,
rotations) to the matches; when that leaves too few inliers a homography is tried (perspective tilt),
which must then clear a stricter inlier count and look like a sane view change. A candidate becomes a
near-duplicate only when enough keypoints agree on one transform: accidental descriptor matches between
different pictures scatter and never agree (calibrated in benchmarks/ndd_eval.py, docs/ndd.md).

The answer carries the evidence (matches, inliers), the transform (scale, rotation, kind) and the
shared region as a box in each picture (fractions of its width and height), which the web app outlines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from models.pdq.features import LocalFeatures
from models.pdq.regions import Box


@dataclass(frozen=True)
class VerifyParams:
    ratio: float = 0.8  # Lowe's ratio test
    max_descriptor_distance: int = 64  # of 256 bits
    min_inliers: int = 12  # similarity transform
    min_inliers_homography: int = 20  # perspective: more freedom, more evidence needed
    reproj_share: float = 0.015  # RANSAC tolerance, share of the reference's longer side
    min_scale: float = 0.1
    max_scale: float = 10.0
    min_spread: float = 0.04  # the inliers' bounding box covers at least this share of each picture


@dataclass(frozen=True)
class Verified:
    inliers: int
    matches: int  # after the ratio test
    kind: str  # similarity | homography
    scale: float  # reference pixels per query pixel (original resolutions)
    rotation_deg: float
    query_box: Box  # the shared region in the query
    ref_box: Box  # ... and in the reference
    matrix: list[list[float]]  # 3x3, query pixels -> reference pixels


def _box_of(points: np.ndarray, w: int, h: int) -> Box | None:
    x0, y0 = np.clip(points.min(axis=0), 0, [w, h])
    x1, y1 = np.clip(points.max(axis=0), 0, [w, h])
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return Box(float(x0 / w), float(y0 / h), float(x1 / w), float(y1 / h))


def _spread(points: np.ndarray, w: int, h: int) -> float:
    span = points.max(axis=0) - points.min(axis=0)
    return float(span[0] * span[1]) / max(1, w * h)


def _corners(w: int, h: int) -> np.ndarray:
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)


def _project(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.hstack([pts, np.ones((len(pts), 1))]) @ m.T
    return p[:, :2] / p[:, 2:3]


def _clip_polygon(poly: np.ndarray, w: int, h: int) -> np.ndarray:
    """The part of a convex polygon inside the rectangle [0,w]x[0,h] (Sutherland-Hodgman)."""
    def clip(pts: list[np.ndarray], inside: object, cross: object) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            ci, pi = inside(cur), inside(prev)  # type: ignore[operator]
            if ci:
                if not pi:
                    out.append(cross(prev, cur))  # type: ignore[operator]
                out.append(cur)
            elif pi:
                out.append(cross(prev, cur))  # type: ignore[operator]
        return out

    def at_x(x: float) -> object:
        return lambda a, b: a + (b - a) * ((x - a[0]) / (b[0] - a[0]))

    def at_y(y: float) -> object:
        return lambda a, b: a + (b - a) * ((y - a[1]) / (b[1] - a[1]))

    pts = list(poly)
    for inside, cross in ((lambda p: p[0] >= 0, at_x(0)), (lambda p: p[0] <= w, at_x(w)),
                          (lambda p: p[1] >= 0, at_y(0)), (lambda p: p[1] <= h, at_y(h))):
        pts = clip(pts, inside, cross)
        if not pts:
            return np.zeros((0, 2))
    return np.array(pts)


def _sane_homography(m: np.ndarray, qw: int, qh: int) -> bool:
    """A view change of a flat picture: the query's corners stay a convex, not-too-distorted quad."""
    quad = _project(m, _corners(qw, qh))
    if not np.all(np.isfinite(quad)):
        return False
    edges = np.roll(quad, -1, axis=0) - quad
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return False
    lengths = np.linalg.norm(edges, axis=1)
    # opposite sides within 2x of each other: a tilt, not a degenerate sliver
    return bool(lengths.min() > 0 and max(lengths[0] / lengths[2], lengths[2] / lengths[0],
                                          lengths[1] / lengths[3], lengths[3] / lengths[1]) < 2.0)


def verify(q: LocalFeatures, r: LocalFeatures, p: VerifyParams | None = None) -> Verified | None:
    """The transform from the query picture to the reference picture, or None when no transform is
    supported by enough keypoints."""
    p = p or VerifyParams()
    if len(q) < p.min_inliers or len(r) < p.min_inliers:
        return None
    # each of the reference's keypoints looks for its match among the query's (the larger set): the ratio
    # test against the query's second-best keeps far fewer accidental matches (measured: the most inliers
    # between different pictures fell from 10 to 5 on the dev set)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(r.desc, q.desc, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance <= p.max_descriptor_distance
            and m[0].distance < p.ratio * m[1].distance]
    if len(good) < p.min_inliers:
        return None
    src = q.xy[[m.trainIdx for m in good]].astype(np.float64)
    dst = r.xy[[m.queryIdx for m in good]].astype(np.float64)
    tol = max(2.0, p.reproj_share * max(r.width, r.height))
    m2, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=tol,
                                          maxIters=2000, confidence=0.995, refineIters=10)
    kind, mat, inliers, hmask = "similarity", None, 0, None
    if m2 is not None and mask is not None:
        inliers = int(mask.sum())
        mat = np.vstack([m2, [0.0, 0.0, 1.0]])
    if inliers < p.min_inliers and len(good) >= p.min_inliers_homography:
        hm, hmask = cv2.findHomography(src, dst, cv2.RANSAC, tol, maxIters=2000, confidence=0.995)
        if hm is not None and hmask is not None and int(hmask.sum()) >= p.min_inliers_homography \
                and _sane_homography(hm, q.width, q.height):
            kind, mat, inliers = "homography", hm, int(hmask.sum())
    if mat is None or inliers < (p.min_inliers if kind == "similarity" else p.min_inliers_homography):
        return None
    used = mask if kind == "similarity" else hmask
    assert used is not None
    keep = used.ravel().astype(bool)
    if min(_spread(src[keep], q.width, q.height), _spread(dst[keep], r.width, r.height)) < p.min_spread:
        return None  # every "inlier" in one small spot: a repeated texture or a logo, not a shared picture
    lin = mat[:2, :2] / mat[2, 2]
    scale = math.sqrt(abs(float(np.linalg.det(lin))))
    if not p.min_scale <= scale <= p.max_scale:
        return None
    rotation = math.degrees(math.atan2(float(lin[1, 0]), float(lin[0, 0])))
    # the shared region: the query's frame seen in the reference, clipped to it, and back
    in_ref = _clip_polygon(_project(mat, _corners(q.width, q.height)), r.width, r.height)
    try:
        inv = np.linalg.inv(mat)
    except np.linalg.LinAlgError:
        return None
    in_query = _clip_polygon(_project(inv, _corners(r.width, r.height)), q.width, q.height)
    if len(in_ref) < 3 or len(in_query) < 3:
        return None
    ref_box, query_box = _box_of(in_ref, r.width, r.height), _box_of(in_query, q.width, q.height)
    if ref_box is None or query_box is None:
        return None
    return Verified(inliers, len(good), kind, round(scale, 4), round(rotation, 2), query_box, ref_box,
                    [[round(float(v), 6) for v in row] for row in mat])
