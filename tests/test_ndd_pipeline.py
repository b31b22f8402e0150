"""Near-duplicate detection on the real embedded stack: upload -> pdq processor -> ndd sink ->
the API's in-memory index -> reverse search; and the ndd sink's exactly-once effect under kill -9."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance

from api.app import create_app
from argus.workers import Supervisor, Worker
from benchmarks import ndd_media as media
from core import db, kafka
from core.settings import Settings
from producers.ingest import Ingestor, Metadata

pytestmark = pytest.mark.integration


def ndd_workers() -> list[Worker]:
    """Only what NDD needs (no Triton model in the path): relay, the pdq processor, the ndd sink."""
    return [Worker("relay", ["run", "relay"]), Worker("processor-pdq", ["run", "processor", "pdq"]),
            Worker("sink-ndd", ["run", "sink", "ndd"])]


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def hashed(s: Settings, ids: list[str]) -> int:
    with db.connect(s) as conn:
        return int(db.scalar(conn, "SELECT count(*) FROM ndd_hashes WHERE asset_id = ANY(%s)", (ids,)))


def embedded(s: Settings, ids: list[str]) -> int:
    with db.connect(s) as conn:
        return int(db.scalar(conn, "SELECT count(*) FROM search_docs WHERE asset_id = ANY(%s) AND models ? %s",
                             (ids, "efficientnet_lite0")))


@pytest.fixture
def pipeline_env(env: Settings) -> Settings:
    env.ndd.refresh_interval_s = 0.0  # tests query right after the sink wrote
    return env


def test_image_and_its_copies_are_near_duplicates_not_other_photos(pipeline_env: Settings, sample_files: list[Path],
                                                                     tmp_path: Path) -> None:
    s = pipeline_env
    cat = next(p for p in sample_files if p.stem == "chelsea")
    coffee = next(p for p in sample_files if p.stem == "coffee")
    img = Image.open(cat).convert("RGB")
    copy = media.to_jpeg_bytes(img.resize((img.width // 2, img.height // 2)), quality=40)
    # plus the embedding path, for mode=similar
    sup = Supervisor(s, [*ndd_workers(), Worker("processor-effnet", ["run", "processor", "efficientnet_lite0"]),
                         Worker("sink-search", ["run", "sink", "search"])])
    sup.start()
    try:
        ing = Ingestor(s)
        ids = {name: ing.ingest_bytes(data, Metadata(filename=f"{name}.jpg")).asset_id
               for name, data in (("cat", cat.read_bytes()), ("copy", copy), ("coffee", coffee.read_bytes()))}
        wait_for("3 hashes", lambda: hashed(s, list(ids.values())) == 3)
        wait_for("3 embeddings", lambda: embedded(s, list(ids.values())) == 3)
        client = TestClient(create_app(s))
        r = client.get(f"/v1/ndd/assets/{ids['cat']}", params={"mode": "near"})
        assert r.status_code == 200, r.text
        found = {m["asset_id"]: m for m in r.json()["matches"]}
        assert set(found) == {ids["copy"]} and found[ids["copy"]]["relation"] == "near"
        assert found[ids["copy"]]["distance"] <= s.ndd.image_threshold
        # reverse search with an edited copy that is not in the archive
        brighter = media.to_jpeg_bytes(ImageEnhance.Brightness(img).enhance(1.25), 70)
        r = client.post("/v1/ndd/search", files={"file": ("q.jpg", brighter)}, data={"mode": "near"})
        assert r.status_code == 200, r.text
        assert {m["asset_id"] for m in r.json()["matches"]} == {ids["cat"], ids["copy"]}
        # exact: the same bytes only
        r = client.post("/v1/ndd/search", files={"file": ("q.jpg", cat.read_bytes())}, data={"mode": "exact"})
        assert [(m["asset_id"], m["relation"]) for m in r.json()["matches"]] == [(ids["cat"], "exact")]
        # a threshold of 0 turns the copy away
        r = client.get(f"/v1/ndd/assets/{ids['cat']}", params={"threshold": 0})
        assert r.json()["matches"] == []
        groups = client.get("/v1/ndd/groups").json()
        assert groups["groups"] == [{"size": 2, "asset_ids": sorted([ids["cat"], ids["copy"]])}]
        card = client.get(f"/v1/assets/{ids['copy']}").json()
        assert card["near_duplicates"]["status"] == "indexed"
        assert [m["asset_id"] for m in card["near_duplicates"]["matches"]] == [ids["cat"]]
        assert client.post("/v1/ndd/search", files={"file": ("x.jpg", b"not media")}).status_code == 415
        assert client.get("/v1/ndd/assets/nope").status_code == 404
        # "similar" is the embedding kNN (the upload is embedded on Triton), labelled apart from duplicates
        r = client.post("/v1/ndd/search", files={"file": ("q.jpg", brighter)}, data={"mode": "similar"})
        assert r.status_code == 200, r.text
        similar = r.json()["matches"]
        assert similar and all(m["relation"] == "similar" for m in similar)
        assert similar[0]["asset_id"] in (ids["cat"], ids["copy"])
        r = client.get(f"/v1/ndd/assets/{ids['cat']}", params={"mode": "similar"})
        assert r.status_code == 200 and ids["coffee"] in {m["asset_id"] for m in r.json()["matches"]}
        # the CLI: argus ndd search FILE / --asset ID
        from typer.testing import CliRunner

        from argus.cli import app as cli
        from core.settings import SETTINGS_ENV

        q = tmp_path / "query.jpg"
        q.write_bytes(brighter)
        res = CliRunner().invoke(cli, ["ndd", "search", str(q), "--json"], env={SETTINGS_ENV: s.model_dump_json()})
        assert res.exit_code == 0, res.output
        assert ids["cat"] in res.output and ids["copy"] in res.output and ids["coffee"] not in res.output
        res = CliRunner().invoke(cli, ["ndd", "groups"], env={SETTINGS_ENV: s.model_dump_json()})
        assert res.exit_code == 0 and "1 duplicate group" in res.output
    finally:
        sup.stop()


def test_reframed_copies_are_found_through_the_api_with_path_evidence_and_region(pipeline_env: Settings) -> None:
    """The copies a desk meets: a crop, a bordered copy, a screenshot and an overlaid copy are found by
    reverse search (hash | region | keypoints, with the evidence and the shared region); an unrelated photo
    is not. The archive also holds a screenshot, found from its original by asset id."""
    s = pipeline_env
    photos = media.real_photos()
    sup = Supervisor(s, ndd_workers())
    sup.start()
    try:
        ing = Ingestor(s)
        archive = {n: photos[n] for n in ("chelsea", "coffee", "astronaut")}
        ids = {n: ing.ingest_bytes(media.to_jpeg_bytes(img), Metadata(filename=f"{n}.jpg")).asset_id
               for n, img in archive.items()}
        shot = media.screenshot(photos["rocket"])  # a phone screenshot (the page layout of rocket: see docs)
        ids["rocket-shot"] = ing.ingest_bytes(media.to_jpeg_bytes(shot), Metadata(filename="shot.jpg")).asset_id
        wait_for("4 hashes", lambda: hashed(s, list(ids.values())) == 4)
        with db.connect(s) as conn:
            rows = conn.execute("SELECT asset_id, features IS NOT NULL AS f, jsonb_array_length(regions) AS r "
                                "FROM ndd_hashes").fetchall()
        assert all(r["f"] for r in rows)  # every picture's keypoints landed with its hash
        assert {r["asset_id"]: r["r"] for r in rows}[ids["rocket-shot"]] >= 1  # the screenshot's picture
        client = TestClient(create_app(s))
        cat = photos["chelsea"]
        copies = {"crop": (media.crop(cat, 0.3, "bottomright"), "keypoints"),
                  "border": (media.border(cat, 0.25, (255, 255, 255)), "region"),
                  "screenshot": (media.screenshot(cat), "region"),
                  "overlay": (media.banner(cat), "keypoints")}
        for name, (img, path) in copies.items():
            r = client.post("/v1/ndd/search", files={"file": (f"{name}.jpg", media.to_jpeg_bytes(img, 85))},
                            data={"mode": "near"})
            assert r.status_code == 200, r.text
            (m,) = r.json()["matches"]
            assert m["asset_id"] == ids["chelsea"] and m["relation"] == "near" and m["path"] == path, (name, m)
            assert len(m["region"]["query_box"]) == 4 and len(m["region"]["ref_box"]) == 4
            if path == "keypoints":
                assert m["evidence"]["inliers"] >= s.ndd.min_inliers and m["transform"]["kind"] == "similarity"
            else:
                assert m["evidence"]["distance"] <= s.ndd.image_threshold
        # the crop's place in the original is reported (bottom-right 70 % of the area)
        r = client.post("/v1/ndd/search", files={"file": ("c.jpg", media.to_jpeg_bytes(copies["crop"][0]))})
        box = r.json()["matches"][0]["region"]["ref_box"]
        assert box[0] > 0.1 and box[1] > 0.1 and box[2] > 0.95 and box[3] > 0.95
        # exact mode never takes a framing path
        r = client.post("/v1/ndd/search", files={"file": ("c.jpg", media.to_jpeg_bytes(copies["crop"][0]))},
                        data={"mode": "exact"})
        assert r.json()["matches"] == []
        # an unrelated photo (not archived, its own crop too) finds nothing
        for img in (photos["flower"], media.crop(photos["horse"], 0.2)):
            r = client.post("/v1/ndd/search", files={"file": ("u.jpg", media.to_jpeg_bytes(img))})
            assert r.status_code == 200 and r.json()["matches"] == [], r.json()
        # the archived screenshot, from its original; and the other way round by asset id
        r = client.post("/v1/ndd/search", files={"file": ("rocket.jpg", media.to_jpeg_bytes(photos["rocket"]))})
        assert [m["asset_id"] for m in r.json()["matches"]] == [ids["rocket-shot"]]
        assert client.get(f"/v1/ndd/assets/{ids['rocket-shot']}").json()["matches"] == []
        st = client.get("/v1/ndd/status").json()
        assert st["keypoint_pictures"] == 4 and st["paths"] == ["hash", "region", "keypoints"]
    finally:
        sup.stop()


def test_video_subclip_matches_with_time_ranges_but_shared_black_intro_does_not(pipeline_env: Settings) -> None:
    s = pipeline_env
    photos = media.real_photos()
    fps = 10
    long_frames = list(media.pan_zoom_frames(photos["astronaut"], 24, fps=fps, seed=3))
    long = media.encode(long_frames, fps)
    clip = media.encode(long_frames[10 * fps: 17 * fps], fps, size=(160, 120), crf=30)  # 10 s .. 17 s, rescaled
    intro = list(media.black_frames(4, fps))
    unrelated_a = media.encode(intro + list(media.pan_zoom_frames(photos["coffee"], 10, fps=fps)), fps)
    unrelated_b = media.encode(intro + list(media.pan_zoom_frames(photos["rocket"], 10, fps=fps)), fps)
    sup = Supervisor(s, ndd_workers())
    sup.start()
    try:
        ing = Ingestor(s)
        ids = {name: ing.ingest_bytes(data, Metadata(filename=f"{name}.mp4")).asset_id
               for name, data in (("long", long), ("clip", clip), ("a", unrelated_a), ("b", unrelated_b))}
        wait_for("4 video hashes", lambda: hashed(s, list(ids.values())) == 4)
        with db.connect(s) as conn:
            media_types = {r["media_type"] for r in conn.execute("SELECT media_type FROM ndd_hashes").fetchall()}
        assert media_types == {"video"}
        client = TestClient(create_app(s))
        r = client.get(f"/v1/ndd/assets/{ids['clip']}")
        assert r.status_code == 200, r.text
        (m,) = r.json()["matches"]
        assert m["asset_id"] == ids["long"] and m["relation"] == "near"
        v = m["video"]
        assert abs(v["offset_ms"] - 10_000) <= 1000 and v["query_share"] >= 0.8
        rng = v["ranges"][0]
        assert abs(rng["ref_start_ms"] - 10_000) <= 1000 and abs(rng["ref_end_ms"] - 16_000) <= 1500
        # two unrelated videos that share the same black intro: no match either way
        assert client.get(f"/v1/ndd/assets/{ids['a']}").json()["matches"] == []
        assert client.get(f"/v1/ndd/assets/{ids['b']}").json()["matches"] == []
        # reverse search by uploading a re-encoded copy of the long video
        copy = media.encode(long_frames, fps, codec="mpeg4", fmt="mp4")
        r = client.post("/v1/ndd/search", files={"file": ("q.mp4", copy)})
        best = r.json()["matches"][0]
        assert best["asset_id"] == ids["long"] and best["video"]["query_share"] >= 0.9
        assert client.get("/v1/ndd/groups").json()["groups"] == [
            {"size": 2, "asset_ids": sorted([ids["long"], ids["clip"]])}]
    finally:
        sup.stop()


def test_kill_9_of_the_ndd_sink_leaves_exactly_one_hash_row_per_asset(pipeline_env: Settings,
                                                                      sample_files: list[Path]) -> None:
    from tests.test_exactly_once import count_records, variants

    s = pipeline_env
    workers = ndd_workers()
    # also die once inside the commit window (rows + offsets written, not committed)
    next(w for w in workers if w.name == "sink-ndd").extra_env = {"ARGUS_FAULT": "sink.before_commit:3"}
    sup = Supervisor(s, workers)
    sup.start()
    try:
        ing = Ingestor(s)
        items = variants(sample_files, 40)
        photos = media.real_photos()
        vids = [media.encode(media.pan_zoom_frames(photos[n], 6, fps=8, seed=i), 8)
                for i, n in enumerate(("china", "flower"))]
        ids = [ing.ingest_bytes(d, Metadata(filename=n)).asset_id for n, d in items[:20]]
        ids += [ing.ingest_bytes(v, Metadata(filename=f"v{i}.mp4")).asset_id for i, v in enumerate(vids)]
        kills = 0
        for threshold in (3, 15):
            def progressed(t: int = threshold, now: list[str] = ids) -> bool:
                return hashed(s, now) >= t or "sink-ndd" in sup.dead()  # dead: the fault point fired

            wait_for(f"{threshold} rows", progressed)
            sup.workers["sink-ndd"].extra_env = {}  # restarted clean
            sup.kill("sink-ndd")
            kills += 1
            more = items[20 + 10 * (kills - 1): 30 + 10 * (kills - 1)]
            ids += [ing.ingest_bytes(d, Metadata(filename=n)).asset_id for n, d in more]
            sup.start()
        wait_for("every asset hashed", lambda: hashed(s, ids) == len(ids))
        time.sleep(2)  # let any redelivered duplicates arrive (they must change nothing)
        with db.connect(s) as conn:
            rows = (db.scalar(conn, "SELECT count(*) FROM ndd_hashes"),
                    db.scalar(conn, "SELECT count(DISTINCT asset_id) FROM ndd_hashes"))
            frames_ok = db.scalar(conn, """SELECT bool_and(h.n_frames = (SELECT count(*) FROM ndd_frames f
                                           WHERE f.hash_id = h.id)) FROM ndd_hashes h""")
            stored = db.scalar(conn, "SELECT sum(next_offset) FROM sink_offsets WHERE sink='ndd'")
            # the framing paths' data land in the same row, under the same kills: every picture has its
            # keypoints, every row carries the current version, regions are well-formed arrays
            framing_ok = db.scalar(conn, """SELECT bool_and((media_type = 'video' OR features IS NOT NULL)
                                            AND model_version LIKE %s AND jsonb_typeof(regions) = 'array')
                                            FROM ndd_hashes""", ("%-orb%",))
        assert tuple(int(x) for x in rows) == (len(ids), len(ids)) and frames_ok and framing_ok
        topic = s.topic(kafka.annotations_topic("pdq"))
        assert stored == sum(count_records(s, topic).values())  # offsets consistent with the topic
        print(f"\nndd sink exactly-once: {len(ids)} assets, {kills} kill -9 + 1 crash in the commit window")
    finally:
        sup.stop()
