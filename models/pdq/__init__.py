"""PDQ perceptual hashes for near-duplicate detection: computed here, no Triton.

Images: ``prepare`` decodes (and shrinks to <= 512 px), ``infer`` hashes the batch locally.
Videos: ``prepare`` hashes the sampled frames while they stream out of the decoder, so memory
stays bounded whatever the length; ``infer`` passes the result through. One annotation per asset
(``keyframe_ms`` None) either way: a video's frames travel together in one payload.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from core.imaging import load_image
from core.triton import TritonClient
from models.base import IMAGE_AND_VIDEO, Item, Model
from models.pdq import hashing as pdq
from models.pdq.video import hash_video
from schemas.events import AnnotationPayload, FrameHash, MediaUploaded, PerceptualHash


def _boxed(obj: Any) -> np.ndarray:
    """A 0-d object array: the runtime stacks rows with np.stack, which keeps each object whole."""
    arr = np.empty((), dtype=object)
    arr[()] = obj
    return arr


class PdqHasher(Model):
    name = "pdq"
    task = "near-duplicate hashes (PDQ; videos: per frame)"
    version = "pdqhash"  # + the hasher's version and the video sampling rate (model_version)
    source_package = "pdqhash (algorithmic, no weights)"
    source_registry = "none"
    licence = "BSD-3-Clause (pdqhash)"
    media_types = IMAGE_AND_VIDEO
    outputs = ["PAYLOAD"]
    served_by_triton = False
    max_batch = 64

    @cached_property
    def model_version(self) -> str:
        # keyed by the hasher and the video sampling rate: changing either re-hashes into a new version
        return f"pdqhash-{pdq.pdqhash.__version__}-{self.settings.ndd.video_fps:g}fps"

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        if event.media_type == "video":
            cfg = self.settings.ndd
            vh = hash_video(data, fps=cfg.video_fps, max_frames=cfg.video_max_frames,
                            max_pixels=self.settings.limits.max_image_pixels)
            payload = PerceptualHash(
                media_type="video",
                quality=max(f.quality for f in vh.frames),
                frames=[FrameHash(t_ms=f.t_ms, hash=f.hash, quality=f.quality) for f in vh.frames],
                interval_ms=vh.interval_ms,
                duration_ms=vh.duration_ms,
            )
            return [Item(event, None, {"MEDIA": _boxed(payload)})]
        img = load_image(data, self.settings.limits.max_image_pixels)
        return [Item(event, None, {"MEDIA": _boxed(pdq.to_rgb_array(img))})]

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.empty(len(inputs["MEDIA"]), dtype=object)
        for i, obj in enumerate(inputs["MEDIA"]):
            if isinstance(obj, PerceptualHash):
                out[i] = obj
            else:
                h, q = pdq.hash_array(obj)
                out[i] = PerceptualHash(media_type="image", hash=h, quality=q)
        return {"PAYLOAD": out}

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return list(outputs["PAYLOAD"][:n])
