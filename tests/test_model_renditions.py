"""renditions: thumbnails, previews, a video's poster and keyframe strip (models/renditions.py), computed in the
processor without Triton and stored in the object store under deterministic keys.

Unit tests need no server (a dict stands in for the object store). The integration test runs the real processor
on the embedded stack, kills it with kill -9 (and crashes it in the window after its outputs are acknowledged but
before its offsets are committed), restarts it, and checks the effect is exactly once: one renditions annotation per
asset and version, every listed key in the store, decodable, with the listed size and byte count, nothing extra.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from core.imaging import MediaDecodeError, load_image, load_image_sized
from core.settings import Settings
from models.frames import media_frames
from models.renditions import SPEC, Renditions, RenditionSpec, is_blank, rendition_key
from schemas.events import MediaUploaded
from schemas.events import Renditions as RenditionsPayload
from tests.support.videofactory import make_video

ASSET = "ab" * 32


class DictStore:
    """The object store's put_bytes, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        assert content_type == "image/jpeg"
        self.objects[key] = data


def model_with_store(spec: RenditionSpec = SPEC) -> tuple[Renditions, DictStore]:
    model = Renditions(Settings())
    store = DictStore()
    model.__dict__["store"] = store  # the cached_property's slot
    model.spec = spec
    return model, store


def event(media_type: str = "image", asset_id: str = ASSET) -> MediaUploaded:
    return MediaUploaded(event_id="e", asset_id=asset_id, bucket="b", object_key="k", media_type=media_type,  # type: ignore[arg-type]
                         content_type="image/jpeg", size_bytes=1, filename="x")


def photo(size: tuple[int, int] = (4000, 3000)) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).resize(size)


def jpeg_bytes(img: Image.Image, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def render(model: Renditions, data: bytes, media_type: str = "image") -> RenditionsPayload:
    (item,) = model.prepare(event(media_type), data)
    (payload,) = model.to_payloads(model.infer(None, {"MEDIA": np.stack([item.row["MEDIA"]])}), 1)  # type: ignore[arg-type]
    assert isinstance(payload, RenditionsPayload)
    return payload


def decoded(store: DictStore, key: str) -> Image.Image:
    img = Image.open(io.BytesIO(store.objects[key]))
    assert img.format == "JPEG"
    img.load()
    return img


def test_image_thumb_and_preview_sizes_upright_progressive() -> None:
    model, store = model_with_store()
    # a 4000x3000 photo taken with the camera turned: EXIF orientation 6 -> upright it is 3000x4000
    payload = render(model, jpeg_bytes(photo(), orientation=6))
    assert (payload.media_type, payload.width, payload.height, payload.duration_ms) == ("image", 3000, 4000, None)
    by_name = {r.name: r for r in payload.items}
    assert set(by_name) == {"thumb", "preview"}
    assert (by_name["thumb"].width, by_name["thumb"].height) == (240, 320)
    assert (by_name["preview"].width, by_name["preview"].height) == (960, 1280)
    for r in payload.items:
        assert r.key == rendition_key(ASSET, SPEC.tag, f"{r.name}.jpg") and r.t_ms is None
        img = decoded(store, r.key)
        assert img.size == (r.width, r.height) and len(store.objects[r.key]) == r.bytes
        assert img.info.get("progressive") or img.info.get("progression")
        assert not img.getexif()  # no metadata copied (EXIF, GPS) into what the web shows
    assert payload.search_fields().labels == [] and payload.search_fields().embedding is None
    assert payload.label_scores() == {}


def test_small_images_are_never_upscaled() -> None:
    model, store = model_with_store()
    buf = io.BytesIO()
    photo((200, 100)).save(buf, "PNG")
    payload = render(model, buf.getvalue())
    assert [(r.name, r.width, r.height) for r in payload.items] == [("thumb", 200, 100), ("preview", 200, 100)]
    assert all(decoded(store, r.key).size == (200, 100) for r in payload.items)


def test_draft_decodes_jpeg_at_reduced_scale_and_keeps_the_limits() -> None:
    data = jpeg_bytes(photo())
    assert load_image(data, 80_000_000).size == (4000, 3000)
    img, w, h = load_image_sized(data, 80_000_000, target=1280)
    assert img.size == (2000, 1500) and (w, h) == (4000, 3000)  # DCT 1/2: the smallest scale >= 1280
    assert load_image(data, 80_000_000, target=320).size == (500, 375)  # 1/8
    with pytest.raises(MediaDecodeError, match="too large"):
        load_image(data, 1_000_000, target=320)  # the pixel limit is checked from the header first


def test_the_same_input_gives_the_same_keys_and_bytes_and_the_spec_names_the_version() -> None:
    data = jpeg_bytes(photo((1600, 1200)))
    (m1, s1), (m2, s2) = model_with_store(), model_with_store()
    assert render(m1, data) == render(m2, data) and s1.objects == s2.objects  # a retry rewrites identical objects
    other = RenditionSpec(thumb=256)
    m3, s3 = model_with_store(other)
    render(m3, data)
    assert m3.model_version != m1.model_version and SPEC.tag in m1.model_version
    assert not set(s3.objects) & set(s1.objects)  # a new spec never overwrites the old one's objects
    assert m1.model_version.startswith("renditions-") and not m1.served_by_triton and m1.default


def test_video_poster_skips_black_frames_and_the_strip_uses_the_models_keyframes() -> None:
    from skimage import data

    black = np.zeros((240, 320, 3), np.uint8)
    vid = make_video([(black, 1.0), (data.chelsea(), 2.0), (data.coffee(), 2.0)], size=(320, 240))
    model, store = model_with_store()
    payload = render(model, vid, "video")
    assert (payload.media_type, payload.width, payload.height) == ("video", 320, 240)
    assert payload.duration_ms is not None and 4000 <= payload.duration_ms <= 5500
    times = [ms for ms, _ in media_frames(Settings(), event("video"), vid)]
    frames = [r for r in payload.items if r.name == "frame"]
    assert [r.t_ms for r in frames] == times and len(times) >= 3
    for r in frames:
        assert (r.width, r.height) == (240, 180) and decoded(store, r.key).size == (240, 180)
        assert r.key.endswith(f"/frame-{r.t_ms}.jpg")
    assert is_blank(decoded(store, frames[0].key))  # the video starts black ...
    thumb = next(r for r in payload.items if r.name == "thumb")
    assert not is_blank(decoded(store, thumb.key))  # ... the poster does not
    assert (thumb.width, thumb.height) == (320, 240)


def test_undecodable_media_is_a_decode_error() -> None:
    model, _ = model_with_store()
    with pytest.raises(MediaDecodeError):
        model.prepare(event(), b"not an image at all")
    with pytest.raises(MediaDecodeError):
        model.prepare(event("video"), b"\x00\x00\x00\x18ftypmp42 broken")


# ------------------------------------------------------------------------------------------------ integration
def distinct_jpegs(n: int, size: int = 1800) -> Iterator[tuple[str, bytes]]:
    """n different real-photo JPEGs (crops + colour shifts of the sample photos), big enough to take some time."""
    from benchmarks import ndd_media as media

    photos = list(media.real_photos().values())
    for i in range(n):
        src = photos[i % len(photos)].convert("RGB")
        k = i // len(photos)
        w, h = src.size
        img = src.crop((k * 5, k * 3, w - k * 2, h - k * 4)).resize((size, size * 3 // 4))
        arr = np.asarray(img, dtype=np.int16)
        img = Image.fromarray(np.clip(arr + (i % 7) - 3, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=88)
        yield f"photo-{i}.jpg", buf.getvalue()


@pytest.mark.integration
@pytest.mark.slow
def test_kill_9_and_commit_window_crash_leave_exactly_one_rendition_set(stack_settings: Settings) -> None:
    from skimage import data

    from argus import pipeline
    from argus.workers import Supervisor, default_workers
    from core import db, kafka
    from core.storage import ObjectStore
    from producers.ingest import Ingestor, Metadata
    from tests.support.stack import isolated_settings
    from tests.test_exactly_once import count_records

    base = stack_settings.model_copy(deep=True)
    base.models = ["renditions"]
    s = isolated_settings(base, "t_renditions_exactly_once")
    s.processor.batch_size = 4  # several batches, so the crashes land mid-stream
    workers = default_workers(s)
    proc = "processor-renditions"
    for w in workers:
        if w.name == proc:  # crash after the 2nd batch's outputs are acked, before its offsets are committed
            w.extra_env = {"ARGUS_FAULT": "processor.after_emit:2"}
    sup = Supervisor(s, workers)
    sup.start()
    try:
        ing = Ingestor(s)
        media = list(distinct_jpegs(36))
        videos = [("clip-a.mp4", make_video([(data.chelsea(), 1.5), (data.coffee(), 1.5)])),
                  ("clip-b.mp4", make_video([(np.zeros((240, 320, 3), np.uint8), 1.0), (data.astronaut(), 2.0)]))]
        ids = [ing.ingest_bytes(d, Metadata(filename=n)).asset_id for n, d in media[:18] + videos]

        def annotated() -> int:
            return pipeline.progress(s, ids, "renditions").annotated

        deadline = time.monotonic() + 180
        while proc not in sup.dead() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc in sup.dead(), "the fault point was not reached"
        sup.workers[proc].extra_env = {}
        sup.restart(proc)
        # a second wave, and an outside kill -9 while it is being rendered
        ids += [ing.ingest_bytes(d, Metadata(filename=n)).asset_id for n, d in media[18:]]
        mid = annotated() + 3
        while annotated() < mid and time.monotonic() < deadline:
            time.sleep(0.02)
        sup.kill(proc)
        killed_at = annotated()
        sup.start()
        final = pipeline.wait_until_done(s, ids, "renditions", timeout=300)
        assert final.done and final.failed == 0, (final, sup.dead())

        records = sum(count_records(s, s.topic(kafka.annotations_topic("renditions"))).values())
        with db.connect(s) as conn:
            rows = conn.execute("SELECT asset_id, model_version, count(*) AS n FROM annotations "
                                "WHERE model='renditions' GROUP BY asset_id, model_version").fetchall()
            payloads = {r["asset_id"]: r["payload"] for r in conn.execute(
                "SELECT asset_id, payload FROM annotations WHERE model='renditions'").fetchall()}
        assert len(rows) == len(ids) and all(r["n"] == 1 for r in rows)
        assert {r["model_version"] for r in rows} == {Renditions(s).model_version}
        assert records > len(ids)  # the commit-window crash re-sent an acknowledged batch upstream ...
        store = ObjectStore(s)
        listed = 0
        for asset_id, payload in payloads.items():
            keys = {i["key"] for i in payload["items"]}
            stored = {o.object_name for o in store.client.list_objects(
                store.bucket, prefix=f"renditions/{asset_id[:2]}/{asset_id}/", recursive=True)
                if "/work-" not in o.object_name}  # ingest's working copy (producers/working_copy.py), not ours
            assert stored == keys, asset_id  # ... yet every key listed exists and nothing else was written
            for item in payload["items"]:
                blob = store.get(item["key"])
                img = Image.open(io.BytesIO(blob))
                img.load()
                assert (img.format, img.size, len(blob)) == ("JPEG", (item["width"], item["height"]), item["bytes"])
                listed += 1
        kinds = {p["media_type"] for p in payloads.values()}
        assert kinds == {"image", "video"}
        print(f"\nrenditions exactly-once: assets={len(ids)} annotation_records={records} rows={len(rows)} "
              f"objects={listed} killed_at={killed_at}/{len(ids)}")
    finally:
        sup.stop()
