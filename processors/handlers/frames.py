"""What every image model's ``prepare`` shares: an image, or a video's keyframes, as RGB frames.

Images give one frame (``keyframe_ms=None``); videos give one frame per keyframe (argus/video.py),
each annotated on its own (``keyframe_ms`` set) and then summarised by the runtime.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from argus import video
from argus.imaging import load_image
from argus.settings import Settings
from schemas.events import MediaUploaded

IMAGE_AND_VIDEO = frozenset({"image", "video"})


def media_frames(settings: Settings, event: MediaUploaded, data: bytes,
                 max_keyframes: int | None = None) -> list[tuple[int | None, Image.Image]]:
    """[(keyframe_ms, RGB image)]: one entry for an image, up to ``max_keyframes`` for a video."""
    if event.media_type == "video":
        cfg = settings.video
        frames = video.keyframes(
            data, max_frames=min(cfg.max_keyframes, max_keyframes or cfg.max_keyframes), sample_ms=cfg.sample_ms,
            max_samples=cfg.max_samples, scene_threshold=cfg.scene_threshold, fill_ms=cfg.fill_ms,
            max_side=cfg.max_side,
        )
        return [(f.pts_ms, f.image) for f in frames]
    return [(None, load_image(data, settings.limits.max_image_pixels))]


def letterbox(img: Image.Image, size: int, fill: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``img`` into a size x size canvas (top-left, aspect kept) -> (uint8 [size,size,3], int32 [2] =
    the content's width and height). Models return boxes normalised to that content, i.e. to the
    original frame, so the client never has to undo the scaling."""
    scale = min(size / img.width, size / img.height)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    canvas.paste(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), (0, 0))
    return np.ascontiguousarray(np.asarray(canvas, dtype=np.uint8)), np.array([w, h], dtype=np.int32)
