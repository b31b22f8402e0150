"""Phone videos carry their creation time and GPS position as container tags, not EXIF: an iPhone MOV
(QuickTime ``mdta`` keys ``com.apple.quicktime.creationdate`` / ``location.ISO6709`` / make / model, plus the
``creation_time`` of the movie header) and an Android-style MP4 (``creation_time`` and the ``©xyz`` location atom,
read as ``location``). Both are written here with PyAV (ffmpeg's muxers, as the phones' own files are laid out),
read by models/media_metadata.py ``extract_video``, and through the pipeline found by search's date-taken and GPS
box filters (docs/metadata.md)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

import av
import pytest
from PIL import Image

from core.settings import Settings
from models.media_metadata import extract

IPHONE = {"creation_time": "2024-05-03T08:11:12.000000Z",  # the movie header's time (UTC)
          "com.apple.quicktime.creationdate": "2024-05-03T10:11:12+0200",  # local time with its zone: wins
          "com.apple.quicktime.location.ISO6709": "+53.5500+009.9900+012.000/",
          "com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 15 Pro"}
ANDROID = {"creation_time": "2024-06-10T12:00:00.000000Z", "location": "+48.8584+002.2945/"}


def phone_video(fmt: str, tags: dict[str, str], color: tuple[int, int, int] = (20, 40, 90)) -> bytes:
    buf = io.BytesIO()
    options = {"movflags": "use_metadata_tags"} if fmt == "mov" else {}  # QuickTime keys, as iPhones write them
    with av.open(buf, mode="w", format=fmt, options=options) as out:
        for k, v in tags.items():
            out.metadata[k] = v
        st = out.add_stream("libx264", rate=10)
        st.width, st.height = 160, 120
        st.pix_fmt = "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_image(Image.new("RGB", (160, 120), (color[0] + i * 10, *color[1:])))
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return buf.getvalue()


def test_iphone_mov_and_android_mp4_creation_time_and_gps() -> None:
    mov = phone_video("mov", IPHONE)
    assert mov[4:12] == b"ftypqt  "
    m = extract(mov, "video")
    assert m.taken_at == datetime(2024, 5, 3, 8, 11, 12, tzinfo=UTC) and m.date_created == "2024-05-03T10:11:12+02:00"
    assert (m.gps_lat, m.gps_lon, m.gps_alt) == (53.55, 9.99, 12.0)
    assert (m.make, m.camera_model, m.width, m.height) == ("Apple", "iPhone 15 Pro", 160, 120)
    assert m.warnings == [] and m.raw["com.apple.quicktime.location.ISO6709"] == IPHONE[
        "com.apple.quicktime.location.ISO6709"]

    mp4 = extract(phone_video("mp4", ANDROID), "video")
    assert mp4.taken_at == datetime(2024, 6, 10, 12, tzinfo=UTC)
    assert (mp4.gps_lat, mp4.gps_lon, mp4.gps_alt) == (48.8584, 2.2945, None)


def test_bad_container_tags_warn_and_keep_the_rest() -> None:
    m = extract(phone_video("mov", {"com.apple.quicktime.location.ISO6709": "+95.0000+200.0000/",
                                    "com.apple.quicktime.creationdate": "0000-00-00T00:00:00+0000",
                                    "com.apple.quicktime.make": "Apple"}), "video")
    assert m.gps_lat is None and m.gps_lon is None and m.taken_at is None and m.make == "Apple"
    assert any("GPS out of range" in w for w in m.warnings), m.warnings


@pytest.mark.integration
def test_phone_videos_found_by_date_taken_and_gps_box(stack_settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.auth import create_key
    from tests.support.modelrun import annotations, model_run

    media = {"iphone": (phone_video("mov", IPHONE), "IMG_0042.MOV"),
             "android": (phone_video("mp4", ANDROID, (90, 20, 20)), "VID_20240610.mp4")}
    with model_run(stack_settings, "t_phone_video", ["media_metadata"], media) as (s, ids):
        rec = annotations(s, ids["iphone"], "media_metadata")[0]["payload"]
        assert (rec["gps_lat"], rec["gps_lon"], rec["date_created"]) == (53.55, 9.99, "2024-05-03T10:11:12+02:00")
        _, key = create_key(s, ["read"], "desk")
        client = TestClient(create_app(s))

        def hits(**params: str) -> set[str]:
            r = client.get("/v1/search", params=params, headers={"X-API-Key": key})
            assert r.status_code == 200, r.text
            return {h["asset_id"] for h in r.json()["hits"]}

        deadline = time.monotonic() + 60
        while hits(bbox="9.5,53.3,10.5,53.8") != {ids["iphone"]}:  # Hamburg
            assert time.monotonic() < deadline, "the iPhone video never matched its GPS box"
            time.sleep(0.3)
        assert hits(bbox="2.0,48.7,2.5,49.0") == {ids["android"]}  # Paris
        assert hits(taken_from="2024-05-03T00:00:00Z", taken_to="2024-05-03T23:59:59Z") == {ids["iphone"]}
        assert hits(taken_from="2024-06-01T00:00:00Z") == {ids["android"]}
        assert hits(taken_from="2024-05-01T00:00:00Z", taken_to="2024-06-30T00:00:00Z",
                    bbox="-10,40,20,60") == {ids["iphone"], ids["android"]}
        assert hits(taken_to="2024-01-01T00:00:00Z") == set()
