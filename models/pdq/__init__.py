"""PDQ perceptual hashes for near-duplicate detection: computed here, no Triton.

Images: ``prepare`` decodes (and shrinks to <= 512 px), ``infer`` hashes the batch locally.
Videos: ``prepare`` hashes the sampled frames while they stream out of the decoder, so memory
stays bounded whatever the length; ``infer`` passes the result through. One annotation per asset
(``keyframe_ms`` None) either way: a video's frames travel together in one payload.
"""

from __future__ import annotations

import base64
from functools import cached_property
from typing import Any

import numpy as np

from core.imaging import load_image
from core.triton import TritonClient
from models.base import IMAGE_AND_VIDEO, Item, Model
from models.frames import decode_target
from models.pdq import features as orb
from models.pdq import hashing as pdq
from models.pdq.regions import RegionHash as Region
from models.pdq.regions import region_hashes
from models.pdq.video import hash_video
from schemas.events import AnnotationPayload, FrameHash, MediaUploaded, PerceptualHash, RegionHash


def region_payloads(regions: list[Region] | tuple[Region, ...]) -> list[RegionHash]:
    return [RegionHash(box=r.box.as_list(), hash=r.hash, quality=r.quality) for r in regions]


def image_payload(rgb: np.ndarray, orig_size: tuple[int, int], n_keypoints: int) -> PerceptualHash:
    """An image's PDQ hash, its content regions' hashes and its ORB features (the indexed side)."""
    h, q = pdq.hash_array(rgb)
    feats = orb.extract(rgb, n_keypoints, grid=True, orig_size=orig_size)
    return PerceptualHash(media_type="image", hash=h, quality=q, regions=region_payloads(region_hashes(rgb)),
                          features=base64.b64encode(feats.pack()).decode() if len(feats) else None)


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
    input_side = pdq.MAX_SIDE  # hashes and keypoints come from a <= 512 px copy

    @cached_property
    def model_version(self) -> str:
        # keyed by the hasher, the video sampling rate and the regions/keypoints (r1 = models/pdq/regions.py
        # rules, orbN = N ORB keypoints per picture): changing any re-hashes into a new version
        return (f"pdqhash-{pdq.pdqhash.__version__}-{self.settings.ndd.video_fps:g}fps-r1-"
                f"orb{self.settings.ndd.index_keypoints}")

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        if event.media_type == "video":
            cfg = self.settings.ndd
            vh = hash_video(data, fps=cfg.video_fps, max_frames=cfg.video_max_frames,
                            max_pixels=self.settings.limits.max_image_pixels)
            payload = PerceptualHash(
                media_type="video",
                quality=max(f.quality for f in vh.frames),
                frames=[FrameHash(t_ms=f.t_ms, hash=f.hash, quality=f.quality, regions=region_payloads(f.regions))
                        for f in vh.frames],
                interval_ms=vh.interval_ms,
                duration_ms=vh.duration_ms,
            )
            return [Item(event, None, {"MEDIA": _boxed(payload)})]
        img = load_image(data, self.settings.limits.max_image_pixels,
                         target=decode_target(self.settings, self.input_side))
        return [Item(event, None, {"MEDIA": _boxed((pdq.to_rgb_array(img), img.size))})]

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.empty(len(inputs["MEDIA"]), dtype=object)
        for i, obj in enumerate(inputs["MEDIA"]):
            if isinstance(obj, PerceptualHash):
                out[i] = obj
            else:
                rgb, size = obj
                out[i] = image_payload(rgb, size, self.settings.ndd.index_keypoints)
        return {"PAYLOAD": out}

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return list(outputs["PAYLOAD"][:n])
