"""pdq: PDQ perceptual hashes of images and sampled video frames (models/pdq/), computed in the processor without
Triton; what the near-duplicate index and matcher do with them is in tests/test_ndd_unit.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from benchmarks import ndd_media as media
from core.settings import NddSettings, Settings
from models.pdq import hashing as pdq
from models.pdq.video import sampling_interval_ms


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return media.real_photos()


def test_hex_round_trip_and_hamming() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, 256)
    h = pdq.bits_to_hex(bits)
    assert len(h) == 64 and pdq.hex_to_bytes(h).hex() == h
    flipped = bits.copy()
    flipped[[0, 7, 100]] ^= 1
    assert pdq.hamming(h, pdq.bits_to_hex(flipped)) == 3
    with pytest.raises(ValueError):
        pdq.hex_to_bytes("ab")


def test_pdq_separates_edits_from_other_photos(photos: dict[str, Image.Image]) -> None:
    cat, coffee = photos["chelsea"], photos["coffee"]
    h, q = pdq.hash_image(cat)
    assert q >= 90
    for edited in (media.jpeg(cat, 30), cat.resize((cat.width // 2, cat.height // 2)),
                   ImageEnhance.Brightness(cat).enhance(1.3)):
        assert pdq.hamming(h, pdq.hash_image(edited)[0]) <= 31
    assert pdq.hamming(h, pdq.hash_image(coffee)[0]) > 64
    # a mirrored copy is found through the query's dihedral variants
    variants = pdq.dihedral_hashes(pdq.to_rgb_array(cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    assert min(pdq.hamming(h, v) for v in variants) <= 31


def test_black_frame_has_no_quality() -> None:
    _, q = pdq.hash_array(np.zeros((240, 320, 3), np.uint8))
    assert q < NddSettings().min_quality


def test_sampling_interval_is_capped_for_long_videos() -> None:
    assert sampling_interval_ms(10_000, 1.0, 1200) == 1000
    assert sampling_interval_ms(3_600_000, 1.0, 1200) == 3000


def test_the_model_hashes_an_image_in_the_processor(photos: dict[str, Image.Image]) -> None:
    import io

    from models.pdq import PdqHasher
    from schemas.events import MediaUploaded, PerceptualHash

    model = PdqHasher(Settings())
    buf = io.BytesIO()
    photos["chelsea"].save(buf, "PNG")
    ev = MediaUploaded(event_id="e", asset_id="a", bucket="b", object_key="k", media_type="image",
                       content_type="image/png", size_bytes=buf.tell(), filename="cat.png")
    (item,) = model.prepare(ev, buf.getvalue())
    (payload,) = model.to_payloads(model.infer(None, {"MEDIA": np.stack([item.row["MEDIA"]])}), 1)  # type: ignore[arg-type]
    assert isinstance(payload, PerceptualHash) and payload.hash == pdq.hash_image(photos["chelsea"])[0]
    assert model.model_version.startswith("pdqhash-") and not model.served_by_triton
