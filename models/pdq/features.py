"""Local features for geometric verification of near-duplicates: ORB keypoints (OpenCV) and their
256-bit binary descriptors, with a compact byte form stored beside the PDQ hash.

Why ORB (not SIFT): its descriptors are 32-byte binary codes, searchable in the same faiss binary
indexes as PDQ hashes, and 10x cheaper to compute on a CPU; the oriented FAST detector over an 8-level
pyramid covers the rotations and the 0.25x-4x scale changes a re-post brings. Indexed pictures keep
``n_keep`` keypoints spread over a 4x4 grid (so that a crop of any part still holds some of them);
queries keep more (``n_query``), strongest first.

Coordinates are in the ORIGINAL image's pixels (so the transform found between two pictures gives a
real scale); features are computed on a copy whose longer side is ``FEATURE_SIDE`` (small pictures are
enlarged to it: ORB needs some pixels around each keypoint).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

FEATURE_SIDE = 512
GRID = 4
_MAGIC = b"ORB1"
_HEADER = struct.Struct("<4sIII")  # magic, original width, original height, n


@dataclass(frozen=True)
class LocalFeatures:
    xy: np.ndarray  # float32 [n, 2], original-image pixels
    desc: np.ndarray  # uint8 [n, 32]
    width: int  # original image size
    height: int

    def __len__(self) -> int:
        return len(self.desc)

    def pack(self) -> bytes:
        """4 + 12 header bytes, then per keypoint x, y (uint16, pixels) and the 32-byte descriptor."""
        xy = np.clip(np.round(self.xy), 0, 65535).astype("<u2")
        return _HEADER.pack(_MAGIC, self.width, self.height, len(self)) + xy.tobytes() + self.desc.tobytes()

    @classmethod
    def unpack(cls, data: bytes) -> LocalFeatures:
        magic, w, h, n = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a packed ORB feature set")
        off = _HEADER.size
        xy = np.frombuffer(data, dtype="<u2", count=2 * n, offset=off).reshape(n, 2).astype(np.float32)
        desc = np.frombuffer(data, dtype=np.uint8, count=32 * n, offset=off + 4 * n).reshape(n, 32)
        return cls(xy, np.ascontiguousarray(desc), int(w), int(h))


EMPTY = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), 0, 0)


def _grey(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)  # type: ignore[no-any-return]


def extract(rgb: np.ndarray, n: int, grid: bool = True, orig_size: tuple[int, int] | None = None,
            detect: int = 1500) -> LocalFeatures:
    """Up to ``n`` ORB features of an RGB (or grey) array. ``orig_size`` (w, h): the size of the original
    picture the array was shrunk from (coordinates are reported in it); default the array's own size.
    ``grid``: spread the kept keypoints over a 4x4 grid (indexed pictures); else the strongest."""
    grey = _grey(rgb)
    h, w = grey.shape[:2]
    ow, oh = orig_size or (w, h)
    s = FEATURE_SIDE / max(w, h)
    if abs(s - 1) > 0.05:
        grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))),
                          interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    fh, fw = grey.shape[:2]
    orb = cv2.ORB_create(  # type: ignore[attr-defined]
        nfeatures=max(n, detect) if grid else n, scaleFactor=1.2, nlevels=8, edgeThreshold=15, patchSize=31,
        fastThreshold=12)
    kps, desc = orb.detectAndCompute(grey, None)
    if desc is None or not kps:
        return LocalFeatures(EMPTY.xy, EMPTY.desc, ow, oh)
    xy = np.array([k.pt for k in kps], dtype=np.float32)
    resp = np.array([k.response for k in kps], dtype=np.float32)
    order = np.argsort(-resp, kind="stable")
    if grid and len(order) > n:
        cell = (np.minimum(GRID - 1, (xy[:, 0] * GRID / fw).astype(int)) * GRID
                + np.minimum(GRID - 1, (xy[:, 1] * GRID / fh).astype(int)))
        per_cell = -(-n // (GRID * GRID))
        taken: dict[int, int] = {}
        first: list[int] = []
        rest: list[int] = []
        for i in order:
            c = int(cell[i])
            if taken.get(c, 0) < per_cell:
                taken[c] = taken.get(c, 0) + 1
                first.append(int(i))
            else:
                rest.append(int(i))
        order = np.array((first + rest)[:n])
    else:
        order = order[:n]
    xy = xy[order] * np.array([ow / fw, oh / fh], dtype=np.float32)
    return LocalFeatures(np.ascontiguousarray(xy), np.ascontiguousarray(desc[order]), ow, oh)
