"""The content area of a picture: what is left after trimming uniform margins (borders, letterbox bars,
screenshot padding) or, in a screenshot of a post or a page, the embedded picture itself.

Two steps. First the uniform margins are trimmed from each side (rows or columns that are all, up to
2 % of their pixels, within a few grey levels of that side's outermost line: borders of any colour,
letterbox bars). Then, inside, a row (column) is *active* when a real share of its pixels differs from
the row's own median grey level: photo rows are active; a uniform border, a letterbox bar, a flat UI bar
and a line of text on a
flat background are not (text covers only a small share of its row). The content box is the longest
run of active rows (small gaps bridged) and, inside it, the longest run of active columns. The same
rule runs on the indexed picture and on the query, so a bordered copy and its original (or a
screenshot and the picture it shows) end up hashing the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.pdq.hashing import hash_array

DEVIATION = 20  # grey levels from the row's median that make a pixel "not background"
ACTIVE_SHARE = 0.25  # share of such pixels that makes a row/column part of a picture
GAP_SHARE = 0.02  # flat runs up to this share of the side inside a picture are bridged
MIN_TRIM = 0.02  # a box that removes less than this on every side is the whole frame
MIN_AREA = 0.15  # a box smaller than this share of the frame is not "the picture"
MIN_SIDE = 32  # pixels
TRIM_FUZZ = 12  # grey levels: a margin line's pixels are this close to its side's colour ...
TRIM_SHARE = 0.98  # ... this many of them
MAX_TRIM = 0.45  # no side loses more than this


@dataclass(frozen=True)
class Box:
    """A box in fractions of the image's width and height (x0, y0, x1, y1), 0..1."""

    x0: float
    y0: float
    x1: float
    y1: float

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        return (round(self.x0 * width), round(self.y0 * height), round(self.x1 * width), round(self.y1 * height))

    def as_list(self) -> list[float]:
        return [round(v, 4) for v in (self.x0, self.y0, self.x1, self.y1)]

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


FULL = Box(0.0, 0.0, 1.0, 1.0)


def _grey(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return rgb.astype(np.int16)
    return (rgb[..., 0].astype(np.int16) * 77 + rgb[..., 1].astype(np.int16) * 150
            + rgb[..., 2].astype(np.int16) * 29) >> 8


def _active(grey: np.ndarray, axis: int) -> np.ndarray:
    """Per row (axis=1) or column (axis=0): is it part of a picture?"""
    med = np.median(grey, axis=axis, keepdims=True)
    return (np.abs(grey - med) > DEVIATION).mean(axis=axis) > ACTIVE_SHARE  # type: ignore[no-any-return]


def _longest_run(active: np.ndarray) -> tuple[int, int] | None:
    n = len(active)
    gap = max(2, round(GAP_SHARE * n))
    runs: list[list[int]] = []
    idx = np.flatnonzero(active)
    for i in idx:
        if runs and i - runs[-1][1] <= gap:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    if not runs:
        return None
    a, b = max(runs, key=lambda r: r[1] - r[0])
    return a, b + 1


def _trim(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) after removing uniform margin lines from every side."""
    h, w = grey.shape
    y0, y1, x0, x1 = 0, h, 0, w

    def uniform(line: np.ndarray, ref: float) -> bool:
        return bool((np.abs(line - ref) <= TRIM_FUZZ).mean() >= TRIM_SHARE)

    ref = float(np.median(grey[0]))
    while y0 < h * MAX_TRIM and uniform(grey[y0, x0:x1], ref):
        y0 += 1
    ref = float(np.median(grey[h - 1]))
    while y1 > h * (1 - MAX_TRIM) and uniform(grey[y1 - 1, x0:x1], ref):
        y1 -= 1
    ref = float(np.median(grey[:, 0]))
    while x0 < w * MAX_TRIM and uniform(grey[y0:y1, x0], ref):
        x0 += 1
    ref = float(np.median(grey[:, w - 1]))
    while x1 > w * (1 - MAX_TRIM) and uniform(grey[y0:y1, x1 - 1], ref):
        x1 -= 1
    return x0, y0, x1, y1


def _picture(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the longest run of active rows and, in it, of active columns."""
    rows = _longest_run(_active(grey, 1))
    if rows is None:
        return None
    y0, y1 = rows
    cols = _longest_run(_active(grey[y0:y1], 0))
    if cols is None:
        return None
    x0, x1 = cols
    # the rows again, within the picture's columns (a side bar of text would have kept flat rows active)
    rows2 = _longest_run(_active(grey[y0:y1, x0:x1], 1))
    if rows2 is not None:
        y0, y1 = y0 + rows2[0], y0 + rows2[1]
    return x0, y0, x1, y1


def _box(x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> Box | None:
    box = Box(x0 / w, y0 / h, x1 / w, y1 / h)
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE or box.area < MIN_AREA:
        return None
    if max(box.x0, box.y0, 1 - box.x1, 1 - box.y1) < MIN_TRIM:
        return None
    return box


def content_regions(rgb: np.ndarray) -> list[Box]:
    """Up to two boxes, each only when it is not (nearly) the whole frame: the frame without its uniform
    margins ("trim": borders, letterbox bars), and the picture-like area inside it ("picture": the photo
    of a screenshot or a page). Both are hashed: the trim box is stable for borders of any width, the
    picture box finds a picture among text and UI."""
    h, w = rgb.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        return []
    grey = _grey(rgb)
    tx0, ty0, tx1, ty1 = 0, 0, w, h
    for _ in range(3):  # a border around a picture that has margins of its own: trim both
        a, b, c, d = _trim(grey[ty0:ty1, tx0:tx1])
        if (a, b, c, d) == (0, 0, tx1 - tx0, ty1 - ty0):
            break
        tx0, ty0, tx1, ty1 = tx0 + a, ty0 + b, tx0 + c, ty0 + d
        if tx1 - tx0 < MIN_SIDE or ty1 - ty0 < MIN_SIDE:
            return []  # uniform: nothing to hash
    out: list[Box] = []
    trimmed = _box(tx0, ty0, tx1, ty1, w, h)
    if trimmed is not None:
        out.append(trimmed)
    inner = _picture(grey[ty0:ty1, tx0:tx1])
    if inner is not None and (inner[2] - inner[0]) * (inner[3] - inner[1]) >= MIN_AREA * (tx1 - tx0) * (ty1 - ty0):
        pic = _box(tx0 + inner[0], ty0 + inner[1], tx0 + inner[2], ty0 + inner[3], w, h)
        if pic is not None and (trimmed is None or max(abs(pic.x0 - trimmed.x0), abs(pic.y0 - trimmed.y0),
                                                          abs(pic.x1 - trimmed.x1), abs(pic.y1 - trimmed.y1))
                                > MIN_TRIM):
            out.append(pic)
    return out


def crop_to(rgb: np.ndarray, box: Box) -> np.ndarray:
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box.pixels(w, h)
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


@dataclass(frozen=True)
class RegionHash:
    box: Box
    hash: str
    quality: int


def region_hashes(rgb: np.ndarray) -> list[RegionHash]:
    """PDQ hashes of the content regions of an RGB array (see content_regions)."""
    out = []
    for box in content_regions(rgb):
        h, q = hash_array(crop_to(rgb, box))
        out.append(RegionHash(box, h, q))
    return out
