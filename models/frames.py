"""What every image model's ``prepare`` shares: an image, or a video's keyframes, as RGB frames.

Images give one frame (``keyframe_ms=None``); videos give one frame per keyframe (core/video.py),
each annotated on its own (``keyframe_ms`` set) and then summarised (``Model.summarize``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from core import video
from core.imaging import load_image
from core.settings import Settings
from core.triton import TritonClient
from models.base import IMAGE_AND_VIDEO, Item, Model
from schemas.events import Box, MediaUploaded


def media_frames(settings: Settings, event: MediaUploaded, data: bytes, max_keyframes: int | None = None,
                 target: int | None = None) -> list[tuple[int | None, Image.Image]]:
    """[(keyframe_ms, RGB image)]: one entry for an image, up to ``max_keyframes`` for a video. ``target``: the
    longest side the caller needs (a JPEG then decodes at a reduced DCT scale; video frames are already small)."""
    if event.media_type == "video":
        cfg = settings.video
        frames = video.keyframes(
            data, max_frames=min(cfg.max_keyframes, max_keyframes or cfg.max_keyframes), sample_ms=cfg.sample_ms,
            max_samples=cfg.max_samples, scene_threshold=cfg.scene_threshold, fill_ms=cfg.fill_ms,
            max_side=cfg.max_side,
        )
        return [(f.pts_ms, f.image) for f in frames]
    return [(None, load_image(data, settings.limits.max_image_pixels, target=decode_target(settings, target)))]


def decode_target(settings: Settings, side: int | None) -> int | None:
    """The ``load_image`` target for a model that looks at ``side`` pixels (None: decode at full resolution)."""
    return side if settings.processor.scaled_decode else None


def letterbox(img: Image.Image, size: int, fill: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``img`` into a size x size canvas (top-left, aspect kept) -> (uint8 [size,size,3], int32 [2] =
    the content's width and height). Models return boxes normalised to that content, i.e. to the
    original frame, so the client never has to undo the scaling."""
    scale = min(size / img.width, size / img.height)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    canvas.paste(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), (0, 0))
    return np.ascontiguousarray(np.asarray(canvas, dtype=np.uint8)), np.array([w, h], dtype=np.int32)


@dataclass(frozen=True)
class Detection:
    """One box a detector found (a COCO object, an NSFW body-part region), decoded by the client."""

    class_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 normalised to the content (0..1)


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one [4] x1y1x2y2 box with [K,4] boxes (what the detectors' de-duplication compares)."""
    lt = np.maximum(box[:2], others[:, :2])
    rb = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_of(values: Sequence[float]) -> Box:
    """(x1, y1, x2, y2) already normalised to the frame -> a Box (5 decimals: ~0.1 px at 10k px)."""
    return Box(**dict(zip(("x1", "y1", "x2", "y2"), (round(float(v), 5) for v in values), strict=True)))


class Letterboxed(Model):
    """A model fed one square letterboxed canvas per image/keyframe, with ``SIZE`` = the content's width and
    height in the canvas (what normalises the boxes to the frame)."""

    media_types = IMAGE_AND_VIDEO
    canvas: ClassVar[int]  # the model's square input size
    fill: ClassVar[int] = 0  # margin grey level
    max_keyframes: ClassVar[int] = 8

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "canvas" in cls.__dict__ and "input_side" not in cls.__dict__:
            cls.input_side = cls.canvas  # all it looks at (the working copy and the DCT scale follow from it)

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        return [Item(event, ms, dict(zip(("IMAGE", "SIZE"), letterbox(img, self.canvas, self.fill), strict=True)))
                for ms, img in media_frames(self.settings, event, data, self.max_keyframes, target=self.canvas)]


class LetterboxedDetector(Letterboxed):
    """A letterboxed detector whose raw output is decoded here: ``SIZE`` is not a model input, it stays with
    the processor and comes back to ``to_payloads`` with the outputs."""

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = triton.infer(self.name, {"IMAGE": inputs["IMAGE"]}, self.outputs)
        return {**out, "SIZE": inputs["SIZE"]}
