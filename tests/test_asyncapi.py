"""The AsyncAPI 3.0 document (schemas/asyncapi.py): committed files current, valid against the AsyncAPI 3.0.0 JSON
Schema, topics as core/kafka.py names them, served by the API, and the worked subscriber (examples/subscriber.py)
reading assets.annotated from the embedded broker."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient

from core import kafka
from core.settings import Settings
from schemas import asyncapi
from schemas.events import dump
from tests.support.events import annotated_event

# the AsyncAPI 3.0.0 JSON Schema from the npm package @asyncapi/specs 6.11.1 (schemas/3.0.0-without-$id.json,
# Apache-2.0), gzipped
SPEC = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json.gz"


def validate(doc: dict[str, Any]) -> None:
    spec = json.loads(gzip.decompress(SPEC.read_bytes()))
    jsonschema.Draft7Validator(spec).validate(doc)


def test_committed_asyncapi_is_current() -> None:
    for filename, text in asyncapi.render().items():
        path = asyncapi.OUT_DIR / filename
        assert path.exists() and path.read_text() == text, f"{path} is stale: run `argus schemas`"


def test_document_validates_and_covers_every_topic() -> None:
    doc = asyncapi.document()
    validate(doc)
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {kafka.TOPIC_UPLOADED, kafka.TOPIC_DLQ, kafka.TOPIC_LIFECYCLE, kafka.TOPIC_ANNOTATED,
                         kafka.TOPIC_LIFECYCLE_REQUESTS,
                         kafka.annotations_topic("{model}"), kafka.backfill_topic("{model}")}
    events = {c[1] for c in asyncapi.CHANNELS.values()}
    from schemas.events import EVENT_TYPES

    assert events == set(EVENT_TYPES)  # every event has a topic
    # a real event validates against its message's payload schema, resolved inside the document
    msg = doc["components"]["messages"]["AssetAnnotated"]
    schema = {**doc, **msg["payload"]}  # refs (#/components/schemas/...) resolve against the document
    jsonschema.validate(json.loads(dump(annotated_event("a" * 64))), schema)


@pytest.mark.integration
def test_served_and_subscriber_example(env: Settings) -> None:
    from api.app import create_app

    c = TestClient(create_app(env))
    r = c.get("/v1/asyncapi.json", headers={"X-API-Key": "dev-key"})
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["channels"]["assetsAnnotated"]["address"] == env.topic(kafka.TOPIC_ANNOTATED)
    y = c.get("/v1/asyncapi.yaml", headers={"X-API-Key": "dev-key"})
    assert y.status_code == 200 and yaml.safe_load(y.text) == doc

    # two events and a byte-identical re-emission on the embedded broker; the example handles each event once
    topic = env.topic(kafka.TOPIC_ANNOTATED)
    kafka.ensure_topics(env, [topic])
    producer = kafka.producer(env)
    events = [annotated_event("b" * 64), annotated_event("c" * 64)]
    for ev in [*events, events[0]]:
        producer.produce(topic, key=ev.asset_id, value=dump(ev))
    assert producer.flush(30) == 0

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    try:
        import subscriber  # examples/subscriber.py
    finally:
        sys.path.pop(0)
    got: list[dict[str, Any]] = []
    n = subscriber.consume(env.kafka_bootstrap, got.append, prefix=env.kafka.topic_prefix, group="example-test",
                           max_events=2, timeout_s=60)
    assert n == 2 and {e["asset_id"] for e in got} == {"b" * 64, "c" * 64}
    assert "boat 0.90" in subscriber.summary(got[0])
