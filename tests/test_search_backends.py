"""ONE query suite, run against both search backends behind sinks/search/interface.py:

- ``postgres``: the embedded PostgreSQL 18 + pgvector (the real engine of the default deployment);
- ``opensearch``: the OpenSearch adapter talking to ``osmem-server`` (PyPI), an in-memory emulator of
  the OpenSearch REST dialect started here as a subprocess on a free loopback port. It is NOT
  OpenSearch: it checks that the adapter's mappings, bulk writes (external versions, optimistic
  concurrency), bool/range/terms queries, aggregations, highlights, aliases and scroll requests are
  well formed and answered as OpenSearch answers them. It has no k-NN, so the k-NN tests run on
  PostgreSQL only and the k-NN request bodies are checked against the documented format in
  tests/test_opensearch_requests.py.

The corpus is synthetic and small, with a ground truth computed here; facet counts must be exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from core import db
from core.settings import Settings
from retrieval.search import get_search_index
from retrieval.search import projects as catalog
from retrieval.search.interface import NumericRange, SearchIndex, SearchQuery
from schemas.events import (
    Annotation,
    FaceDetection,
    ImageClassification,
    Label,
    MediaUploaded,
    OcrText,
    TimedTag,
    TimeRange,
    VideoSummary,
    annotation_id,
)

pytestmark = pytest.mark.integration

N = 30
DIM = 8
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLS, FACES, OCR = "efficientnet_lite0", "face_mtcnn", "ocr_ppocr"
TOPICS = ["cat sofa tabby", "election vote ballot", "football stadium goal"]
TITLES = ["A tabby cat asleep on the sofa", "Voters queue at the election office", "Stadium crowd after the goal"]


@dataclass
class Asset:
    asset_id: str
    i: int
    media_type: str
    source: str
    collection: str | None
    uploaded_at: datetime
    labels: list[str]
    face_count: int
    ocr: str
    nsfw: bool
    vec: np.ndarray
    title: str
    extra: dict[str, Any] = field(default_factory=dict)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def make_corpus() -> list[Asset]:
    rng = np.random.default_rng(7)
    centers = [_unit(rng.normal(size=DIM)) for _ in TOPICS]
    out = []
    for i in range(N):
        topic = i % 3
        media = "video" if i % 5 == 4 else "image"
        labels = TOPICS[topic].split()[: 1 + i % 3]
        out.append(Asset(
            asset_id=f"{i:02d}" + "a" * 62, i=i, media_type=media,
            source=["wire", "upload", "watch:drop"][i % 3 if i % 7 else 0],
            collection=[None, "sports", "politics"][(i // 2) % 3],
            uploaded_at=T0 + timedelta(days=i, hours=i % 5),
            labels=labels, face_count=i % 4, ocr="BREAKING NEWS results" if i % 6 == 0 else "",
            nsfw=(media == "video" and i % 10 == 4), vec=_unit(centers[topic] + 0.3 * rng.normal(size=DIM)),
            title=f"{TITLES[topic]} #{i}"))
    return out


CORPUS = make_corpus()


def all_labels(a: Asset) -> list[str]:
    """What the index derives: the classifier's labels, "face" from faces, video flags as labels."""
    return a.labels + (["face"] if a.face_count else []) + (["nsfw"] if a.nsfw else [])
BY_ID = {a.asset_id: a for a in CORPUS}


def upload_event(a: Asset) -> MediaUploaded:
    return MediaUploaded(event_id=f"upl-{a.asset_id[:40]}", asset_id=a.asset_id, bucket="b", object_key=f"k/{a.i}",
                         media_type=a.media_type, content_type="image/jpeg" if a.media_type == "image" else "video/mp4",
                         size_bytes=100 + a.i, filename=f"IMG_{a.i:04d}.jpg", title=a.title,
                         description=f"Picture number {a.i}", source=a.source, collection=a.collection,
                         occurred_at=a.uploaded_at)


def ann(a: Asset, model: str, version: str, payload: Any, at: datetime, keyframe: int | None = None) -> Annotation:
    aid = annotation_id(a.asset_id, model, version, keyframe)
    return Annotation(event_id=f"ann-{aid}", annotation_id=aid, asset_id=a.asset_id, model=model,
                      model_version=version, keyframe_ms=keyframe, payload=payload, occurred_at=at)


def annotation_events(a: Asset, version: str = "v1", vec: np.ndarray | None = None,
                      labels: list[str] | None = None, at: datetime | None = None) -> list[Annotation]:
    at = at or a.uploaded_at + timedelta(seconds=5)
    v = [float(x) for x in (a.vec if vec is None else vec)]
    labels = a.labels if labels is None else labels
    if a.media_type == "video":
        cls: Any = VideoSummary(keyframes_ms=[0, 1000], flags=["nsfw"] if a.nsfw else [], embedding=v, tags=[
            TimedTag(name=lb, score=0.9, keyframes=1, ranges=[TimeRange(start_ms=0, end_ms=1000)]) for lb in labels])
    else:
        cls = ImageClassification(labels=[Label(name=lb, score=0.5) for lb in labels], embedding=v, embedding_dim=DIM)
    evs = [ann(a, CLS, version, cls, at),
           ann(a, FACES, "f1", FaceDetection(face_count=a.face_count, faces=[]), at)]
    if a.ocr:
        evs.append(ann(a, OCR, "o1", OcrText(text=a.ocr, lines=[]), at))
    return evs


def load(s: Settings, index: SearchIndex, assets: list[Asset], events: list[Annotation] | None = None) -> None:
    with db.transaction(s) as tx:
        tx.cursor().executemany(
            """INSERT INTO assets (asset_id, bucket, object_key, media_type, content_type, size_bytes, filename)
               VALUES (%s,'b',%s,%s,'image/jpeg',1,%s) ON CONFLICT DO NOTHING""",
            [(a.asset_id, f"k/{a.i}", a.media_type, f"IMG_{a.i:04d}.jpg") for a in assets])
        index.upsert_assets(tx, [upload_event(a) for a in assets])
        index.apply_annotations(tx, events if events is not None else
                                [e for a in assets for e in annotation_events(a)])


@pytest.fixture(scope="module")
def osmem_url() -> Iterator[str]:
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False)  # binds 127.0.0.1:<free port>; exits with this process
    try:
        yield server.url
    finally:
        server.close()


def backend_settings(base: Settings, backend: str, name: str, osmem_url: str | None) -> Settings:
    from tests.support.stack import isolated_settings

    s = base.model_copy(deep=True)
    s.search_backend = backend
    if backend == "opensearch":
        assert osmem_url is not None
        s.opensearch.url = osmem_url
        s.opensearch.index_prefix = f"{name}-"
        s.opensearch.refresh = "wait_for"
    return isolated_settings(s, name)


@pytest.fixture(scope="module", params=["postgres", "opensearch"])
def loaded(request: pytest.FixtureRequest, stack_settings: Settings) -> tuple[Settings, SearchIndex]:
    backend = request.param
    url = request.getfixturevalue("osmem_url") if backend == "opensearch" else None
    s = backend_settings(stack_settings, backend, f"t_sb_{backend}", url)
    index = get_search_index(s)
    load(s, index, CORPUS)
    return s, index


def ids(hits: list[Any]) -> set[str]:
    return {h.asset_id for h in hits}


def truth(pred: Any) -> set[str]:
    return {a.asset_id for a in CORPUS if pred(a)}


# ------------------------------------------------------------------------------ text + filters
def test_full_text_over_title_labels_ocr_filename(loaded: tuple[Settings, SearchIndex]) -> None:
    _, index = loaded
    r = index.search(SearchQuery(text="sofa", limit=100))
    assert ids(r.hits) == truth(lambda a: a.i % 3 == 0) and r.total == len(r.hits)
    assert all(h.highlight and "<b>" in h.highlight for h in r.hits)
    # OCR text and the filename are searchable too
    assert ids(index.search(SearchQuery(text="breaking", limit=100)).hits) == truth(lambda a: bool(a.ocr))
    assert ids(index.search(SearchQuery(text="IMG_0007", limit=100)).hits) == {CORPUS[7].asset_id}
    # web-search syntax: AND by default, -exclusion, or
    both = index.search(SearchQuery(text="election -ballot", limit=100))
    assert ids(both.hits) == truth(lambda a: a.i % 3 == 1 and "ballot" not in a.labels)
    either = index.search(SearchQuery(text="sofa or stadium", limit=100))
    assert ids(either.hits) == truth(lambda a: a.i % 3 in (0, 2))


def test_filters_and_exact_facets(loaded: tuple[Settings, SearchIndex]) -> None:
    _, index = loaded
    q = SearchQuery(media_type="image", source="wire", limit=100, facets=(
        "labels", "media_type", "source", "collection", "flags", "face_count"))
    r = index.search(q)
    want = [a for a in CORPUS if a.media_type == "image" and a.source == "wire"]
    assert ids(r.hits) == {a.asset_id for a in want} and r.total == len(want)
    label_counts: dict[str, int] = {}
    for a in want:
        for lb in all_labels(a):
            label_counts[lb] = label_counts.get(lb, 0) + 1
    assert r.facets["labels"] == dict(sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0])))
    assert r.facets["media_type"] == {"image": len(want)}
    coll: dict[str, int] = {}
    for a in want:
        if a.collection:
            coll[a.collection] = coll.get(a.collection, 0) + 1
    assert r.facets["collection"] == coll
    assert r.facets["face_count"] == {k: sum(1 for a in want if cond(a.face_count)) for k, cond in (
        ("0", lambda n: n == 0), ("1", lambda n: n == 1), ("2-5", lambda n: 2 <= n <= 5), ("6+", lambda n: n >= 6))}
    everything = index.search(SearchQuery(limit=0, facets=("flags", "media_type")))
    assert everything.total == N and everything.hits == []
    assert everything.facets["flags"] == {"nsfw": sum(a.nsfw for a in CORPUS), "disturbing": 0}
    assert everything.facets["media_type"] == {"image": 24, "video": 6}


def test_label_numeric_flag_date_project_filters(loaded: tuple[Settings, SearchIndex]) -> None:
    s, index = loaded

    def got(**kw: Any) -> set[str]:
        return ids(index.search(SearchQuery(limit=100, **kw)).hits)

    assert got(labels=("cat", "sofa")) == truth(lambda a: {"cat", "sofa"} <= set(a.labels))
    assert got(any_labels=("tabby", "goal")) == truth(lambda a: bool({"tabby", "goal"} & set(a.labels)))
    assert got(exclude_labels=("cat",)) == truth(lambda a: "cat" not in a.labels)
    assert got(numeric=(NumericRange("face_count", gte=2),)) == truth(lambda a: a.face_count >= 2)
    assert got(numeric=(NumericRange("face_count", gte=1, lte=1),)) == truth(lambda a: a.face_count == 1)
    assert got(flags=(("nsfw", "exclude"),)) == truth(lambda a: not a.nsfw)
    assert got(flags=(("nsfw", "only"),)) == truth(lambda a: a.nsfw)
    lo, hi = T0 + timedelta(days=10), T0 + timedelta(days=20)
    assert got(uploaded_from=lo, uploaded_to=hi) == truth(lambda a: lo <= a.uploaded_at < hi)
    assert got(collection="sports", text="stadium") == truth(lambda a: a.collection == "sports" and a.i % 3 == 2)
    p = catalog.create_project(s, f"picks-{s.search_backend}")
    chosen = [CORPUS[1].asset_id, CORPUS[2].asset_id, CORPUS[5].asset_id]
    assert catalog.add_assets(s, p.project_id, chosen + chosen[:1]) == 3  # idempotent
    assert got(project=p.project_id) == set(chosen)
    assert got(project=p.project_id, text="stadium") == {CORPUS[2].asset_id, CORPUS[5].asset_id}
    catalog.remove_asset(s, p.project_id, chosen[0])
    assert got(project=p.project_id) == set(chosen[1:])


def test_stable_sort_and_pagination(loaded: tuple[Settings, SearchIndex]) -> None:
    _, index = loaded
    newest = [h.asset_id for h in index.search(SearchQuery(limit=100, sort="newest")).hits]
    assert newest == [a.asset_id for a in sorted(CORPUS, key=lambda a: a.uploaded_at, reverse=True)]
    oldest = [h.asset_id for h in index.search(SearchQuery(limit=100, sort="oldest")).hits]
    assert oldest == newest[::-1]
    for q in (SearchQuery(sort="newest"), SearchQuery(text="cat or election")):
        full = [h.asset_id for h in index.search(replace(q, limit=100)).hits]
        pages = [h.asset_id for off in range(0, 30, 7) for h in index.search(replace(q, limit=7, offset=off)).hits]
        assert pages == full and len(set(full)) == len(full)


def test_iter_asset_ids_scrolls_everything_matching(loaded: tuple[Settings, SearchIndex]) -> None:
    _, index = loaded
    assert set(index.iter_asset_ids(SearchQuery(), batch=7)) == set(BY_ID)
    videos = set(index.iter_asset_ids(SearchQuery(media_type="video"), batch=4))
    assert videos == truth(lambda a: a.media_type == "video")


def test_replays_and_older_events_never_overwrite_newer_data(loaded: tuple[Settings, SearchIndex]) -> None:
    s, index = loaded
    a = CORPUS[3]
    before = index.get(a.asset_id)
    load(s, index, [a])  # a replay of the same events
    old = annotation_events(a, labels=["stale"], at=a.uploaded_at - timedelta(days=1))  # an older annotation
    with db.transaction(s) as tx:
        assert index.apply_annotations(tx, old[:1]) == 0
    after = index.get(a.asset_id)
    assert before is not None and after is not None
    assert after["labels"] == before["labels"] and "stale" not in after["labels"]
    assert after["models"] == before["models"]


def test_annotation_before_upload_and_new_model_version(loaded: tuple[Settings, SearchIndex]) -> None:
    """An annotation overtaking its upload makes the doc; a second model version is stored beside the
    first and switched to (labels + vectors) by activate_version, without touching the old one."""
    s, index = loaded
    a = replace(CORPUS[0], asset_id="zz" + "b" * 62, i=99, labels=["cat"])
    with db.transaction(s) as tx:
        tx.execute("""INSERT INTO assets (asset_id, bucket, object_key, media_type, content_type, size_bytes, filename)
                      VALUES (%s,'b','k/99','image','image/jpeg',1,'IMG_0099.jpg')""", (a.asset_id,))
        index.apply_annotations(tx, annotation_events(a))
        index.upsert_assets(tx, [upload_event(a)])
    doc = index.get(a.asset_id)
    assert doc is not None and doc["filename"] == "IMG_0099.jpg" and "cat" in doc["labels"]
    # version v2 arrives (a backfill): stored, but queries keep using v1 until the switch
    v2 = annotation_events(a, version="v2", labels=["lion"], vec=-a.vec)[:1]
    with db.transaction(s) as tx:
        index.apply_annotations(tx, v2)
    doc = index.get(a.asset_id)
    assert doc is not None and doc["models"][CLS]["version"] == "v1" and "lion" not in doc["labels"]
    assert np.allclose(index.vector_of(a.asset_id, CLS) or [], a.vec, atol=1e-5)
    act = index.activate_version(CLS, "v2")
    assert act.previous == "v1" and act.docs_updated >= 1
    doc = index.get(a.asset_id)
    assert doc is not None and doc["models"][CLS]["version"] == "v2" and "lion" in doc["labels"]
    # the other assets have no v2 yet: they keep their v1 labels (nothing disappears)
    assert "cat" in (index.get(CORPUS[0].asset_id) or {})["labels"]
    assert np.allclose(index.vector_of(a.asset_id, CLS) or [], -a.vec, atol=1e-5)
    models = {m.model: m for m in index.vector_models()}
    assert models[CLS].active_version == "v2" and set(models[CLS].versions) >= {"v1", "v2"}
    index.activate_version(CLS, "v1")  # switch back: the suite's other tests expect v1
    assert (index.get(a.asset_id) or {})["models"][CLS]["version"] == "v1"
    with pytest.raises(LookupError):
        index.activate_version(CLS, "v-does-not-exist")


# ------------------------------------------------------------------------------ k-NN (PostgreSQL)
def _exact(query_vec: np.ndarray, pool: list[Asset], k: int) -> list[str]:
    return [a.asset_id for a in sorted(pool, key=lambda a: (-float(a.vec @ query_vec), a.asset_id))[:k]]


def test_knn_filtered_knn_and_hybrid(loaded: tuple[Settings, SearchIndex]) -> None:
    s, index = loaded
    if s.search_backend == "opensearch":
        # justified skip: the only OpenSearch-dialect server installable here (osmem) rejects every k-NN query;
        # the k-NN request bodies are checked against the documented format in test_opensearch_requests.py
        pytest.skip("osmem-server has no k-NN; request bodies: test_opensearch_requests.py")  # justified
    q = CORPUS[4].vec
    hits = index.knn(CLS, q, k=5)
    assert [h.asset_id for h in hits] == _exact(q, CORPUS, 5)
    assert abs(hits[0].score - 1.0) < 1e-4
    images = index.knn(CLS, q, k=5, query=SearchQuery(media_type="image", flags=(("nsfw", "exclude"),)))
    assert [h.asset_id for h in images] == _exact(q, [a for a in CORPUS if a.media_type == "image"], 5)
    one = index.knn(CLS, q, k=5, query=SearchQuery(source="watch:drop", collection="sports"))
    assert [h.asset_id for h in one] == _exact(q, [a for a in CORPUS if a.source == "watch:drop"
                                                    and a.collection == "sports"], 5)
    sim = index.similar(CORPUS[4].asset_id, CLS, k=3)
    assert CORPUS[4].asset_id not in ids(sim) and len(sim) == 3
    hybrid = index.hybrid(SearchQuery(text="election", limit=5), CLS, CORPUS[0].vec)
    assert hybrid.hits and len(hybrid.hits) == 5 and hybrid.total >= 10
    text_only = truth(lambda a: a.i % 3 == 1)
    assert ids(hybrid.hits) & text_only, "the text leg contributes"
    scores = [h.score for h in hybrid.hits]
    assert scores == sorted(scores, reverse=True)


def test_bad_queries_are_refused(loaded: tuple[Settings, SearchIndex]) -> None:
    _, index = loaded
    from retrieval.search.interface import QueryError

    for bad in (SearchQuery(numeric=(NumericRange("face count; drop", gte=1),)),
                SearchQuery(numeric=(NumericRange("face_count", gte=3, lte=1),)),
                SearchQuery(facets=("nope",)), SearchQuery(flags=(("nsfw", "maybe"),)),  # type: ignore[arg-type]
                SearchQuery(uploaded_from=T0, uploaded_to=T0)):
        with pytest.raises(QueryError):
            index.search(bad)


def test_opensearch_alias_rebuild_keeps_every_document(loaded: tuple[Settings, SearchIndex]) -> None:
    s, index = loaded
    if s.search_backend != "opensearch":
        # justified skip: aliases are OpenSearch's mechanism; PostgreSQL switches versions by its active-version row,
        # which the reindex test covers
        pytest.skip("index rebuild behind an alias is OpenSearch's reindexing path")  # justified
    from retrieval.search.opensearch_backend import OpenSearchSearchIndex

    assert isinstance(index, OpenSearchSearchIndex)
    before = index.search(SearchQuery(limit=200, sort="newest"))
    old, new = index.rebuild_assets_index()
    assert old != new and list(index.client.indices.get_alias(name=index.assets_alias)) == [new]
    after = index.search(SearchQuery(limit=200, sort="newest"))
    assert [h.asset_id for h in after.hits] == [h.asset_id for h in before.hits]
    assert after.facets == before.facets
