"""Asset cards and display media through the HTTP API (FastAPI TestClient on the real embedded stack): an image
and a video go through the session's models plus ``renditions``; every card answers 200 with the annotation kinds
the pipeline produced (a video's summaries without embeddings carry ``"embedding": null``, which once made every
video card an HTTP 500); renditions decode as JPEGs of the listed sizes, cached (ETag, 304); the original streams
with Range requests (206/416) so a <video> element can seek; missing things are 404."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.media_routes import _cache_control, content_disposition, parse_range
from core.settings import Settings
from tests.support.videofactory import make_video

MEDIA_MODELS = ["efficientnet_lite0", "pdq", "face_mtcnn", "ocr_ppocr", "renditions"]
VIDEO_NAME = 'Zürich "clip"; 1.mp4'


# ------------------------------------------------------------------------------------------------ unit
def test_parse_range() -> None:
    assert parse_range(None, 1000) is None
    assert parse_range("bytes=0-99", 1000) == (0, 99)
    assert parse_range("bytes=100-", 1000) == (100, 999)
    assert parse_range("bytes=-50", 1000) == (950, 999)
    assert parse_range("bytes=-5000", 1000) == (0, 999)
    assert parse_range("bytes=900-5000", 1000) == (900, 999)
    assert parse_range("bytes=1000-", 1000) == "unsatisfiable"
    assert parse_range("bytes=-0", 1000) == "unsatisfiable"
    assert parse_range("bytes=5-2", 1000) is None  # invalid: ignored, the whole file is served
    assert parse_range("bytes=0-1,5-9", 1000) is None  # several ranges: served whole
    assert parse_range("items=0-1", 1000) is None


def test_content_disposition_is_encoded() -> None:
    value = content_disposition('a"b\r\nSet-Cookie: x=1; ü.mp4')
    assert "\r" not in value and "\n" not in value
    assert value.startswith('inline; filename="a_b__Set-Cookie_ x_1_ _.mp4"; ')
    assert value.endswith("filename*=UTF-8''a%22b%0D%0ASet-Cookie%3A%20x%3D1%3B%20%C3%BC.mp4")
    assert content_disposition("../../etc/passwd").endswith("UTF-8''passwd")


def test_cache_control_follows_anonymous_read() -> None:
    s = Settings()
    s.security.anonymous_read = True
    assert _cache_control(s) == "public, max-age=31536000, immutable"
    s.security.anonymous_read = False
    assert _cache_control(s) == "private, max-age=31536000, immutable"


# ------------------------------------------------------------------------------------------------ integration
@pytest.fixture(scope="module")
def running(stack_settings: Settings, sample_files: list[Path]) -> Iterator[tuple[Settings, dict[str, str], bytes]]:
    from skimage import data

    from argus import pipeline
    from argus.workers import Supervisor, default_workers
    from producers.ingest import Ingestor, Metadata
    from tests.support.stack import SESSION_MODELS, isolated_settings

    base = stack_settings.model_copy(deep=True)
    base.models = [*SESSION_MODELS, "renditions"]
    s = isolated_settings(base, "t_media_api")
    sup = Supervisor(s, default_workers(s))
    sup.start()
    try:
        ing = Ingestor(s)
        photo = next(p for p in sample_files if p.stem == "astronaut")
        video = make_video([(data.chelsea(), 2.0), (data.astronaut(), 2.0), (data.coffee(), 1.0)], size=(320, 240))
        ids = {"image": ing.ingest_path(photo, Metadata(filename=photo.name)).asset_id,
               "video": ing.ingest_bytes(video, Metadata(filename=VIDEO_NAME)).asset_id}
        for model in MEDIA_MODELS:
            final = pipeline.wait_until_done(s, list(ids.values()), model, timeout=300)
            assert final.done and final.failed == 0, (model, final, sup.dead())
        pipeline.wait_until_done(s, list(ids.values()), "text_embed", timeout=120)  # its kind too, if any
        yield s, ids, video
    finally:
        sup.stop()


@pytest.fixture(scope="module")
def client(running: tuple[Settings, dict[str, str], bytes]) -> TestClient:
    from api.app import create_app

    return TestClient(create_app(running[0]))


def _kinds(card: dict[str, Any]) -> set[str]:
    return {a["payload"]["kind"] for a in card["annotations"]}


@pytest.mark.integration
def test_cards_of_an_image_and_a_video(client: TestClient, running: tuple[Settings, dict[str, str], bytes]) -> None:
    _, ids, _ = running
    common = {"classification_embedding", "perceptual_hash", "face_detection", "ocr_text", "renditions"}
    for media_type, extra in (("image", set()), ("video", {"video_summary"})):
        r = client.get(f"/v1/assets/{ids[media_type]}")
        assert r.status_code == 200, (media_type, r.text)
        card = r.json()
        assert card["asset"]["media_type"] == media_type
        assert common | extra <= _kinds(card), (media_type, _kinds(card))
        assert {m["model"] for m in card["models"] if m["status"] == "done"} >= set(MEDIA_MODELS)
        assert card["original_url"] == f"/v1/assets/{ids[media_type]}/original"
        rend = card["renditions"]
        base = f"/v1/assets/{ids[media_type]}/renditions"
        assert rend["thumb"] == f"{base}/thumb" and rend["preview"] == f"{base}/preview"
        if media_type == "image":
            assert rend["frames"] == []
        else:
            assert len(rend["frames"]) >= 3 and all(f["url"] == f"{base}/frame-{f['t_ms']}" for f in rend["frames"])
            summaries = [a["payload"] for a in card["annotations"] if a["payload"]["kind"] == "video_summary"]
            # the defect: summaries of models without embeddings carry null (face, OCR), the others a size
            assert any(p["embedding"] is None for p in summaries)
            assert any(isinstance(p["embedding"], str) and p["embedding"].endswith("floats>") for p in summaries)


@pytest.mark.integration
def test_renditions_decode_at_the_listed_sizes_and_are_cached(
        client: TestClient, running: tuple[Settings, dict[str, str], bytes]) -> None:
    _, ids, _ = running
    for media_type, asset_id in ids.items():
        card = client.get(f"/v1/assets/{asset_id}").json()
        payload = next(a["payload"] for a in card["annotations"] if a["payload"]["kind"] == "renditions")
        urls = {"thumb": card["renditions"]["thumb"], "preview": card["renditions"]["preview"]}
        urls |= {f"frame-{f['t_ms']}": f["url"] for f in card["renditions"]["frames"]}
        for name, url in urls.items():
            kind, _, t = name.partition("-")
            item = next(i for i in payload["items"] if i["name"] == kind and (not t or i["t_ms"] == int(t)))
            r = client.get(url)
            assert r.status_code == 200, (url, r.text)
            assert r.headers["content-type"] == "image/jpeg"
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
            img = Image.open(io.BytesIO(r.content))
            img.load()
            assert (img.format, img.size, len(r.content)) == ("JPEG", (item["width"], item["height"]), item["bytes"])
            longest = max(img.size)
            if kind == "thumb":
                assert longest <= 320
            elif kind == "preview":
                assert longest <= 1280
            else:
                assert img.size[1] <= 180
            etag = r.headers["etag"]
            assert asset_id in etag
            again = client.get(url, headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        if media_type == "image":
            assert card["asset"]["size_bytes"] > 0 and max(payload["width"], payload["height"]) == 512


@pytest.mark.integration
def test_original_streams_with_ranges(client: TestClient, running: tuple[Settings, dict[str, str], bytes]) -> None:
    _, ids, video = running
    url = f"/v1/assets/{ids['video']}/original"
    n = len(video)
    r = client.get(url)
    assert r.status_code == 200 and r.content == video
    assert r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(n)
    assert r.headers["content-disposition"].endswith("filename*=UTF-8''Z%C3%BCrich%20%22clip%22%3B%201.mp4")
    for header, (first, last) in (("bytes=0-99", (0, 99)), ("bytes=100-", (100, n - 1)), ("bytes=-50", (n - 50, n - 1)),
                                  (f"bytes={n - 10}-{n + 500}", (n - 10, n - 1))):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, (header, r.status_code)
        assert r.content == video[first:last + 1], header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{n}"
        assert r.headers["content-length"] == str(last - first + 1)
    r = client.get(url, headers={"Range": f"bytes={n}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{n}"
    r = client.get(url, headers={"If-None-Match": f'"{ids["video"]}"'})
    assert r.status_code == 304
    image = client.get(f"/v1/assets/{ids['image']}/original")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (512, 512)


@pytest.mark.integration
def test_missing_things_are_404(client: TestClient, running: tuple[Settings, dict[str, str], bytes]) -> None:
    _, ids, _ = running
    nobody = "0" * 64
    for url in (f"/v1/assets/{nobody}", f"/v1/assets/{nobody}/renditions/thumb", f"/v1/assets/{nobody}/original",
                f"/v1/assets/{ids['video']}/renditions/frame-987654", f"/v1/assets/{ids['image']}/renditions/frame-0",
                f"/v1/assets/{ids['image']}/renditions/bogus"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert isinstance(r.json()["detail"], str)
