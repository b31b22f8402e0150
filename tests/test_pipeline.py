"""The whole path on the real embedded stack: upload -> Kafka -> Triton -> PostgreSQL + search -> API."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from argus import pipeline
from argus.workers import Supervisor, default_workers
from core import db
from core.settings import Settings
from producers.bulk_import import bulk_import
from producers.ingest import Ingestor, Metadata
from retrieval.search import get_search_index
from retrieval.search.interface import SearchQuery

pytestmark = pytest.mark.integration
MODEL = "efficientnet_lite0"


@pytest.fixture(scope="module")
def running(stack_settings: Settings, sample_files: list[Path]) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Workers running on an isolated database; the sample photos ingested and processed."""
    from tests.support.stack import isolated_settings

    s = isolated_settings(stack_settings, "t_pipeline")
    sup = Supervisor(s, default_workers(s))
    sup.start()
    try:
        report = bulk_import(Ingestor(s), sample_files, show_progress=False)
        assert not report.rejected
        ids = {p.stem: a for p, a in report.created}
        final = pipeline.wait_until_done(s, list(ids.values()), MODEL, timeout=300)
        assert final.done, f"pipeline did not finish: {final}; dead workers: {sup.dead()}"
        yield s, ids
    finally:
        sup.stop()


def test_n_photos_give_n_assets_annotations_and_docs(running: tuple[Settings, dict[str, str]]) -> None:
    s, ids = running
    n = len(ids)
    assert n >= 10
    with db.connect(s) as conn:
        assert conn.execute("SELECT count(*) AS n FROM assets").fetchone()["n"] == n
        assert conn.execute("SELECT count(*) AS n FROM annotations WHERE model=%s", (MODEL,)).fetchone()["n"] == n
        assert conn.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"] == 0
        assert conn.execute("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").fetchone()["n"] == 0
    assert get_search_index(s).count() == n


def test_cat_finds_the_cat_through_its_label(running: tuple[Settings, dict[str, str]]) -> None:
    s, ids = running
    result = get_search_index(s).search(SearchQuery(text="cat", limit=5))
    assert result.hits and result.hits[0].asset_id == ids["chelsea"]
    assert any("cat" in lb for lb in result.hits[0].labels)
    assert result.facets["labels"], "label facet counts are returned"
    assert sum(result.facets["media_type"].values()) == result.total


def test_facet_filter_narrows_exactly(running: tuple[Settings, dict[str, str]]) -> None:
    s, _ = running
    index = get_search_index(s)
    everything = index.search(SearchQuery(limit=100))
    label, count = next(iter(everything.facets["labels"].items()))
    filtered = index.search(SearchQuery(labels=(label,), limit=100))
    assert filtered.total == count == len(filtered.hits)
    assert all(label in h.labels for h in filtered.hits)


def test_more_like_this_is_knn_on_the_embedding(running: tuple[Settings, dict[str, str]]) -> None:
    s, ids = running
    hits = get_search_index(s).similar(ids["astronaut"], MODEL, k=5)
    assert len(hits) == 5 and ids["astronaut"] not in {h.asset_id for h in hits}
    assert hits == sorted(hits, key=lambda h: -h.score)


def test_api_search_card_download_and_idempotent_upload(running: tuple[Settings, dict[str, str]],
                                                         sample_files: list[Path]) -> None:
    s, ids = running
    client = TestClient(create_app(s))
    r = client.get("/v1/search", params={"q": "cat"})
    assert r.status_code == 200 and r.json()["hits"][0]["asset_id"] == ids["chelsea"]
    card = client.get(f"/v1/assets/{ids['chelsea']}").json()
    assert card["models"][0]["status"] == "done"
    assert card["annotations"][0]["model"] == MODEL
    assert client.get(f"/v1/assets/{ids['astronaut']}/similar", params={"k": 3}).status_code == 200
    # download: a presigned URL that really serves the original bytes
    r = client.get(f"/v1/assets/{ids['coffee']}/download", follow_redirects=False)
    assert r.status_code == 307
    body = httpx.get(r.headers["location"]).content
    assert body == next(p for p in sample_files if p.stem == "coffee").read_bytes()
    # uploading the same content again is idempotent (200, same id, no new asset)
    data = next(p for p in sample_files if p.stem == "coffee").read_bytes()
    r = client.post("/v1/assets", files={"file": ("again.jpg", data)}, headers={"X-API-Key": "dev-key"})
    assert r.status_code == 200 and r.json() == {**r.json(), "asset_id": ids["coffee"], "duplicate": True}
    # bad requests get clear 4xx
    assert client.post("/v1/assets", files={"file": ("x.jpg", data)}).status_code == 401
    r = client.post("/v1/assets", files={"file": ("x.jpg", b"%PDF-1.4 not media")},
                    headers={"X-API-Key": "dev-key"})
    assert r.status_code == 415 and "unsupported media" in r.json()["detail"]
    assert client.get("/v1/assets/nope").status_code == 404
    assert client.get("/v1/search", params={"limit": 0}).status_code == 422


def test_corrupt_image_is_dead_lettered_and_the_rest_flow(running: tuple[Settings, dict[str, str]],
                                                          sample_files: list[Path]) -> None:
    s, _ = running
    ing = Ingestor(s)
    good = next(p for p in sample_files if p.stem == "rocket").read_bytes()
    truncated = good[: len(good) // 3]  # a real JPEG header, then nothing
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(good)).rotate(90).save(buf, "JPEG")
    bad = ing.ingest_bytes(truncated, Metadata(filename="truncated.jpg"))
    ok = ing.ingest_bytes(buf.getvalue(), Metadata(filename="rocket-rotated.jpg"))
    final = pipeline.wait_until_done(s, [bad.asset_id, ok.asset_id], MODEL, timeout=120)
    assert final.done and final.failed == 1 and final.annotated == 1
    with db.connect(s) as conn:
        # other models (e.g. pdq) dead-letter the same file on their own: look at this model's
        dl = conn.execute("SELECT * FROM dead_letters WHERE asset_id=%s AND model=%s", (bad.asset_id, MODEL)).fetchone()
        st = conn.execute("SELECT * FROM asset_model_status WHERE asset_id=%s AND model=%s",
                          (bad.asset_id, MODEL)).fetchone()
    assert dl["stage"] == f"processor:{MODEL}" and "truncated" in dl["reason"].lower()
    assert st["status"] == "failed" and st["reason"] == dl["reason"]
