"""The query API and CLI on the real embedded stack: the sample photos go through the pipeline
(EfficientNet + MiniLM text embeddings on Triton), then every search mode is exercised over HTTP:
text + facets + pagination, more-like-this by asset / uploaded picture / region (embedded at query
time through Triton), semantic text, hybrid (RRF), projects, and `argus reindex` switching the
search to a new model version while the old one keeps answering."""

from __future__ import annotations

import gc
import io
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from argus import pipeline
from argus import reindex as rx
from argus.workers import Supervisor, default_workers
from core import db
from core.settings import SETTINGS_ENV, Settings
from models.efficientnet_lite0 import EfficientNetLite0
from processors.runtime import Processor
from producers.bulk_import import bulk_import
from producers.ingest import Ingestor

pytestmark = pytest.mark.integration
MODEL = "efficientnet_lite0"
KEY = {"X-API-Key": "dev-key"}


@pytest.fixture(scope="module")
def running(stack_settings: Settings,
            sample_files: list[Path]) -> Iterator[tuple[Settings, dict[str, str], Supervisor]]:
    from tests.support.stack import isolated_settings

    base = stack_settings.model_copy(deep=True)
    base.models = [MODEL, "text_embed"]  # keep the 2 shared cores for what these tests need
    s = isolated_settings(base, "t_search_api")
    sup = Supervisor(s, default_workers(s))
    sup.start()
    try:
        report = bulk_import(Ingestor(s), sample_files, show_progress=False)
        ids = {p.stem: a for p, a in report.created}
        assert pipeline.wait_until_done(s, list(ids.values()), MODEL, timeout=300).done, sup.dead()
        # the MiniLM text embeddings follow the labels; wait for one per asset
        text_done = pipeline.wait_until_done(s, list(ids.values()), "text_embed", timeout=180)
        assert text_done.indexed == len(ids), (text_done, sup.dead())
        yield s, ids, sup
    finally:
        sup.stop()


@pytest.fixture(scope="module")
def client(running: tuple[Settings, dict[str, str], Supervisor]) -> TestClient:
    return TestClient(create_app(running[0]))


def _png(path: Path, box: tuple[float, float, float, float] | None = None) -> bytes:
    img = Image.open(path).convert("RGB")
    if box:
        w, h = img.size
        img = img.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_text_search_facets_pagination_and_errors(client: TestClient,
                                                  running: tuple[Settings, dict[str, str], Supervisor]) -> None:
    _, ids, _ = running
    r = client.get("/v1/search", params={"q": "cat"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hits"][0]["asset_id"] == ids["chelsea"] and "<b>" in body["hits"][0]["highlight"]
    assert set(body["facets"]) >= {"labels", "media_type", "source", "flags", "face_count"}
    everything = client.get("/v1/search", params={"limit": 200, "sort": "newest"}).json()
    assert everything["total"] == len(ids) and everything["next_offset"] is None
    pages, offset = [], 0
    while offset is not None:
        page = client.get("/v1/search", params={"limit": 4, "offset": offset, "sort": "newest"}).json()
        pages += [h["asset_id"] for h in page["hits"]]
        offset = page["next_offset"]
    assert pages == [h["asset_id"] for h in everything["hits"]]
    label = next(iter(everything["facets"]["labels"]))
    narrowed = client.get("/v1/search", params={"label": label, "nsfw": "exclude"}).json()
    assert narrowed["total"] == everything["facets"]["labels"][label]
    # clear 4xx answers
    assert client.get("/v1/search", params={"num": "face_count:x:"}).status_code == 422
    assert client.get("/v1/search", params={"facet": "nope"}).status_code == 400
    assert client.get("/v1/search", params={"limit": 500}).status_code == 422
    assert client.get("/v1/search", params={"nsfw": "maybe"}).status_code == 422
    assert client.get("/v1/search", params={"project": "prj_missing"}).status_code == 404
    assert client.get("/v1/search/hybrid").status_code == 400
    assert client.get(f"/v1/assets/{ids['chelsea']}/similar", params={"model": "nope"}).status_code == 404
    assert "/v1/search/region" in client.get("/openapi.json").json()["paths"]


def test_more_like_an_uploaded_picture_and_a_region(client: TestClient, sample_files: list[Path],
                                                    running: tuple[Settings, dict[str, str], Supervisor]) -> None:
    _, ids, _ = running
    cat = next(p for p in sample_files if p.stem == "chelsea")
    r = client.post("/v1/search/image", files={"file": ("q.png", _png(cat))}, data={"k": "3"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits[0]["asset_id"] == ids["chelsea"] and hits[0]["score"] > 0.95
    # region of an uploaded picture: the cat's head, cropped from a bigger canvas, finds the cat
    r = client.post("/v1/search/region", files={"file": ("q.png", _png(cat))},
                    data={"box": "0.15,0.0,0.85,0.9", "k": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["asset_id"] == ids["chelsea"]
    # region of an archived asset, with a filter
    r = client.post("/v1/search/region", data={"asset_id": ids["chelsea"], "box": "0.1,0.0,0.9,1.0", "k": "3"},
                    params={"media_type": "image"})
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["asset_id"] == ids["chelsea"]
    bad = [({"asset_id": ids["chelsea"], "box": "0.5,0.5,0.2,0.9"}, 400),  # x2 < x1
           ({"asset_id": ids["chelsea"], "box": "0,0,0.001,0.001"}, 400),  # smaller than 8 px
           ({"asset_id": ids["chelsea"], "box": "1,2,3"}, 400),
           ({"asset_id": "f" * 64, "box": "0,0,1,1"}, 404),
           ({"box": "0,0,1,1"}, 400)]  # neither file nor asset id
    for data, status in bad:
        assert client.post("/v1/search/region", data=data).status_code == status, data
    r = client.post("/v1/search/image", files={"file": ("x.png", b"not an image")})
    assert r.status_code == 400 and "query image" in r.json()["detail"]


def test_semantic_and_hybrid(client: TestClient, running: tuple[Settings, dict[str, str], Supervisor]) -> None:
    _, ids, _ = running
    r = client.get("/v1/search/semantic", params={"text": "a kitten", "k": 3})
    assert r.status_code == 200, r.text
    assert ids["chelsea"] in [h["asset_id"] for h in r.json()["hits"][:2]]
    r = client.get("/v1/search/hybrid", params={"q": "cat", "limit": 5})
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["asset_id"] == ids["chelsea"]
    r = client.get("/v1/search/hybrid", params={"q": "cat", "like": ids["chelsea"], "model": MODEL})
    assert r.status_code == 200 and r.json()["hits"][0]["asset_id"] == ids["chelsea"]
    assert client.get("/v1/search/clip", params={"text": "a cat"}).status_code == 501


def test_projects_api(client: TestClient, running: tuple[Settings, dict[str, str], Supervisor]) -> None:
    _, ids, _ = running
    assert client.post("/v1/projects", json={"name": "no key"}).status_code == 401
    r = client.post("/v1/projects", json={"name": "Space", "description": "rockets"}, headers=KEY)
    assert r.status_code == 201, r.text
    pid = r.json()["project_id"]
    assert client.post("/v1/projects", json={"name": "space"}, headers=KEY).status_code == 409
    r = client.post(f"/v1/projects/{pid}/assets", json={"asset_ids": [ids["rocket"], ids["astronaut"]]}, headers=KEY)
    assert r.status_code == 200 and r.json()["assets"] == 2
    assert client.post(f"/v1/projects/{pid}/assets", json={"asset_ids": ["f" * 64]}, headers=KEY).status_code == 404
    found = client.get(f"/v1/projects/{pid}/search", params={"limit": 50}).json()
    assert {h["asset_id"] for h in found["hits"]} == {ids["rocket"], ids["astronaut"]}
    sim = client.get(f"/v1/assets/{ids['rocket']}/similar", params={"project": pid}).json()
    assert [h["asset_id"] for h in sim] == [ids["astronaut"]]
    assert client.delete(f"/v1/projects/{pid}/assets/{ids['rocket']}", headers=KEY).status_code == 204
    assert client.get(f"/v1/projects/{pid}").json()["assets"] == 1
    assert client.delete(f"/v1/projects/{pid}", headers=KEY).status_code == 204
    assert client.get(f"/v1/projects/{pid}").status_code == 404


def test_cli_search_is_readable(running: tuple[Settings, dict[str, str], Supervisor]) -> None:
    from typer.testing import CliRunner

    from argus.cli import app

    s, ids, _ = running
    env = {SETTINGS_ENV: s.model_dump_json()}
    out = CliRunner().invoke(app, ["search", "cat", "--limit", "3"], env=env)
    assert out.exit_code == 0, out.output
    assert 'search "cat": 1-' in out.output and "facet labels" in out.output
    out = CliRunner().invoke(app, ["search", "--similar-to", ids["chelsea"], "--box", "0.1,0,0.9,1", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert f'"asset_id": "{ids["chelsea"]}"' in out.output
    out = CliRunner().invoke(app, ["search", "--faces-min", "5", "--faces-max", "1"], env=env)
    assert out.exit_code == 2 and "min 5 > max 1" in out.output


class _EffnetV2(EfficientNetLite0):
    """The same network stamped with a new version: what a weights upgrade looks like to the pipeline."""

    @cached_property
    def version(self) -> str:
        return super().version + "-v2"


def test_reindex_backfills_a_new_version_and_switches_search(
        client: TestClient, running: tuple[Settings, dict[str, str], Supervisor]) -> None:
    s, ids, sup = running
    v1 = EfficientNetLite0(s).version
    sup.stop(f"processor-{MODEL}")  # the upgraded processor takes over the consumer group
    handler = _EffnetV2(s)
    proc = Processor(s, handler)
    thread = threading.Thread(target=proc.run, daemon=True)
    thread.start()
    try:
        run = rx.start(s, MODEL, handler.version)
        assert sorted(run.asset_ids) == sorted(ids.values())
        # an overlapping second run re-publishes one asset: still one v2 annotation for it
        again = rx.start(s, MODEL, handler.version, asset_ids=[ids["chelsea"]], missing_only=False)
        p = rx.wait(s, run, timeout=240)
        assert p.finished and p.done == len(ids), p
        rx.wait(s, again, timeout=60)
        # before the switch, queries still use v1 (labels and vectors)
        models = {m["model"]: m for m in client.get("/v1/search/models").json()}
        assert models[MODEL]["active_version"] == v1 and set(models[MODEL]["versions"]) == {v1, handler.version}
        assert client.post(f"/v1/search/models/{MODEL}/activate", json={"version": handler.version}).status_code == 401
        r = client.post(f"/v1/search/models/{MODEL}/activate", json={"version": handler.version}, headers=KEY)
        assert r.status_code == 200 and r.json()["previous"] == v1 and r.json()["docs_updated"] == len(ids)
    finally:
        proc.stop()
        thread.join(30)
        del proc  # drop its Kafka producer now, not when the broker is already gone
        gc.collect()
    with db.connect(s) as conn:
        n = db.scalar(conn, "SELECT count(*) FROM annotations WHERE model=%s AND model_version=%s",
                      (MODEL, handler.version))
        runs = db.scalar(conn, "SELECT count(*) FROM reindex_runs")
    assert n == len(ids) and runs == 2  # exactly one v2 annotation per asset despite the overlapping runs
    models = {m["model"]: m for m in client.get("/v1/search/models").json()}
    assert models[MODEL]["active_version"] == handler.version
    assert models[MODEL]["versions"] == {v1: len(ids), handler.version: len(ids)}
    hits = client.get(f"/v1/assets/{ids['astronaut']}/similar", params={"k": 3}).json()
    assert len(hits) == 3
    assert client.get("/v1/search", params={"q": "cat"}).json()["hits"][0]["asset_id"] == ids["chelsea"]
    sup.start(f"processor-{MODEL}")
