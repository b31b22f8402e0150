"""The OpenSearch adapter's k-NN requests, checked as JSON against OpenSearch's documented k-NN format
(no OpenSearch server runs here and osmem-server, the emulator used by test_search_backends.py, has
no k-NN). References (OpenSearch 2.19 documentation):

- k-NN vector field: ``"type": "knn_vector"``, ``dimension``, ``method`` {``name``: "hnsw", ``space_type``,
  ``engine``, ``parameters`` {``m``, ``ef_construction``}}; the index needs ``settings.index.knn: true``;
- k-NN query: ``{"query": {"knn": {FIELD: {"vector": [...], "k": K, "filter": {...},
  "method_parameters": {"ef_search": N}}}}}`` (efficient filtering: lucene, or faiss >= 2.9);
- scores for ``cosinesimil``: ``(2 - d) / 2`` with ``d = 1 - cos``.

The mapping bodies are also accepted by osmem (it parses knn_vector mappings), which catches typos
in the non-k-NN parts. No server is needed for the rest of this module.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.settings import Settings
from retrieval.search.interface import NumericRange, SearchQuery
from retrieval.search.opensearch_backend import (
    OpenSearchSearchIndex,
    cosine_from_score,
    knn_query_body,
    websearch_to_simple,
)
from sinks.search.opensearch_backend import assets_template, vector_index_body

KNN_CLAUSE_KEYS = {"vector", "k", "filter", "method_parameters", "min_score", "max_distance", "expand_nested_docs",
                   "rescore"}
QUERY_TYPES = {"bool", "term", "terms", "range", "exists", "ids", "match_all"}


def _walk_query(q: dict[str, Any]) -> None:
    """Every node of a filter is a known query type with the documented shape."""
    assert len(q) == 1, q
    kind, body = next(iter(q.items()))
    assert kind in QUERY_TYPES, kind
    if kind == "bool":
        assert set(body) <= {"filter", "must", "must_not", "should", "minimum_should_match"}
        for occ in ("filter", "must", "must_not", "should"):
            for sub in body.get(occ, []):
                _walk_query(sub)
    elif kind == "ids":
        assert isinstance(body["values"], list)
    elif kind == "range":
        (field, bounds), = body.items()
        assert set(bounds) <= {"gte", "gt", "lte", "lt"} and bounds


def test_knn_query_matches_the_documented_format() -> None:
    index = OpenSearchSearchIndex(Settings())
    # include_hidden: no lifecycle lookup in PostgreSQL (this test has no database; tests/test_metadata_rights.py
    # covers hiding killed and embargoed assets on both engines)
    q = SearchQuery(media_type="image", labels=("cat",), numeric=(NumericRange("face_count", gte=1),),
                    flags=(("nsfw", "exclude"),), include_hidden=True)
    must, must_not = index._filter_clauses(q)
    body = knn_query_body([0.1] * 1280, 10, {"bool": {"filter": must, "must_not": must_not}}, ef_search=100)
    json.dumps(body)  # plain JSON, no numpy types
    assert body["size"] == 10 and set(body["query"]) == {"knn"}
    (field, clause), = body["query"]["knn"].items()
    assert field == "embedding"
    assert set(clause) <= KNN_CLAUSE_KEYS
    assert len(clause["vector"]) == 1280 and all(isinstance(x, float) for x in clause["vector"])
    assert clause["k"] == 10 and clause["method_parameters"] == {"ef_search": 100}
    _walk_query(clause["filter"])
    assert {"term": {"media_type": "image"}} in clause["filter"]["bool"]["filter"]
    assert {"range": {"numeric.face_count": {"gte": 1}}} in clause["filter"]["bool"]["filter"]
    nsfw = clause["filter"]["bool"]["must_not"][0]["bool"]["should"]
    assert {"term": {"labels": "nsfw"}} in nsfw
    # no filter: the clause has none (an empty filter would be refused by the engine)
    assert "filter" not in knn_query_body([1.0, 0.0], 3, None, 5)["query"]["knn"]["embedding"]
    assert knn_query_body([1.0, 0.0], 300, None, 100)["query"]["knn"]["embedding"]["method_parameters"] == {
        "ef_search": 300}  # ef_search is never below k


def test_vector_index_mapping_matches_the_documented_format() -> None:
    body = vector_index_body(512, shards=3, replicas=1, model="clip", version="ViT-B/32 v1")
    assert body["settings"]["index"]["knn"] is True
    emb = body["mappings"]["properties"]["embedding"]
    assert emb["type"] == "knn_vector" and emb["dimension"] == 512
    assert emb["method"] == {"name": "hnsw", "space_type": "cosinesimil", "engine": "faiss",
                             "parameters": {"m": 16, "ef_construction": 128}}
    assert body["mappings"]["_meta"] == {"model": "clip", "version": "ViT-B/32 v1"}
    # the filter fields copied into vector documents have the same types as in the assets index
    assets = assets_template("argus-", 1, 0)["template"]["mappings"]["properties"]
    for f in ("media_type", "source", "collection", "labels", "uploaded_at"):
        assert body["mappings"]["properties"][f]["type"] == assets[f]["type"]


def test_index_names_are_valid_opensearch_names() -> None:
    index = OpenSearchSearchIndex(Settings())
    name = index.vec_index("efficientnet_lite0", "EffNet-Lite0:57934424/ONNX v2")
    assert name == name.lower() and not set(name) & set('\\/*?"<>| ,#:') and not name.startswith(("-", "_", "+"))
    assert index.vec_alias("efficientnet_lite0") == "argus-vec-efficientnet_lite0"
    assert index.assets_index(1) == "argus-assets-000001"


@pytest.mark.parametrize("score,cos", [(1.0, 1.0), (0.5, 0.0), (0.0, -1.0), (0.75, 0.5)])
def test_cosine_from_score(score: float, cos: float) -> None:
    assert cosine_from_score(score) == pytest.approx(cos)


def test_web_search_syntax_translation() -> None:
    assert websearch_to_simple('"red car" or bike -truck') == '"red car" | bike -truck'
    assert websearch_to_simple("IMG_0042.jpg") == "IMG 0042 jpg"


def test_mappings_are_accepted_by_the_emulator() -> None:
    """osmem-server parses the template and the knn_vector mapping like OpenSearch would (not k-NN)."""
    from opensearchpy import OpenSearch
    from osmem_server import OsmemServer

    with OsmemServer.start(japanese=False) as server:
        c = OpenSearch(hosts=[server.url])
        c.indices.put_index_template(name="t-assets", body=assets_template("t-", 1, 0))
        c.indices.create(index="t-assets-000001")
        props = c.indices.get_mapping(index="t-assets-000001")["t-assets-000001"]["mappings"]["properties"]
        assert props["labels"]["type"] == "keyword" and props["title"]["analyzer"] == "english"
        c.indices.create(index="t-vec-m-v1", body=vector_index_body(4, 1, 0, "m", "v1"))
        mapping = c.indices.get_mapping(index="t-vec-m-v1")["t-vec-m-v1"]["mappings"]
        assert mapping["properties"]["embedding"]["dimension"] == 4
