"""Event contracts: JSON Schema files are current, events round-trip, bad records get clear reasons."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import (
    Annotation,
    DeadLetter,
    ImageClassification,
    Label,
    MediaUploaded,
    SchemaError,
    annotation_id,
    dump,
    parse,
)
from schemas.jsonschema import JSON_DIR, render


def test_committed_json_schemas_are_current() -> None:
    for filename, text in render().items():
        path = JSON_DIR / filename
        assert path.exists(), f"{path} missing: run `argus schemas`"
        assert path.read_text() == text, f"{path} is stale: run `argus schemas`"


def test_json_schema_validates_a_real_event() -> None:
    import jsonschema

    ev = MediaUploaded(event_id="e", asset_id="a" * 64, bucket="b", object_key="k", media_type="image",
                       content_type="image/jpeg", size_bytes=1, filename="x.jpg")
    schema = json.loads((JSON_DIR / "media.uploaded.v1.schema.json").read_text())
    jsonschema.validate(json.loads(dump(ev)), schema)


text = st.text(min_size=1, max_size=40)
labels = st.lists(st.builds(Label, name=text, score=st.floats(0, 1), class_id=st.integers(0, 999)), max_size=5)


@given(asset=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), model=text, version=text,
       kf=st.none() | st.integers(0, 10**7), labels=labels,
       emb=st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=8))
def test_annotation_round_trip(asset: str, model: str, version: str, kf: int | None, labels: list[Label],
                               emb: list[float]) -> None:
    aid = annotation_id(asset, model, version, kf)
    ann = Annotation(event_id=f"ann-{aid}", annotation_id=aid, asset_id=asset, model=model, model_version=version,
                     keyframe_ms=kf, payload=ImageClassification(labels=labels, embedding=emb,
                                                                 embedding_dim=len(emb)))
    assert parse(dump(ann), Annotation) == ann


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1), st.none() | st.integers(0, 10**6))
def test_annotation_id_is_deterministic_and_distinguishes_keyframes(a: str, m: str, v: str, k: int | None) -> None:
    assert annotation_id(a, m, v, k) == annotation_id(a, m, v, k)
    assert annotation_id(a, m, v, k) != annotation_id(a, m, v, (k or 0) + 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"\x00\xff garbage", "not JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"schema":"annotation","schema_version":1}', "expected schema 'media.uploaded'"),
        (b'{"schema":"media.uploaded","schema_version":99}', "unsupported schema_version 99"),
        (b'{"schema":"media.uploaded","schema_version":1,"event_id":"x"}', "invalid media.uploaded"),
    ],
)
def test_malformed_records_get_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason):
        parse(raw, MediaUploaded)


def test_unknown_fields_are_rejected_not_ignored() -> None:
    d = DeadLetter(event_id="d", stage="s", reason="r", error_type="E")
    obj = json.loads(dump(d))
    obj["surprise"] = 1
    with pytest.raises(SchemaError, match="surprise"):
        parse(json.dumps(obj).encode(), DeadLetter)
