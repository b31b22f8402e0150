"""The AsyncAPI 3.0 document of every Argus topic, generated from the pydantic event models (schemas/events.py).

Run ``argus schemas`` (or ``python -m schemas.asyncapi``) after changing an event or a topic; it writes
``schemas/asyncapi.json`` and ``schemas/asyncapi.yaml``; tests/test_asyncapi.py fails while they are stale and
validates the document against the AsyncAPI 3.0.0 JSON Schema. The API serves it at ``GET /v1/asyncapi.json``
and ``/v1/asyncapi.yaml``; docs/interfaces.md explains it.

Topic names are listed here (this floor cannot import core/kafka.py); tests/test_asyncapi.py checks they match
core.kafka's. An installation's ``kafka.topic_prefix`` is prepended to every address.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from schemas.events import EVENT_TYPES, SCHEMA_VERSION
from schemas.jsonschema import write_files

OUT_DIR = Path(__file__).parent
JSON_FILE, YAML_FILE = "asyncapi.json", "asyncapi.yaml"

KEY_ASSET = {"type": "string", "description": "the asset id (sha256 of the content): every topic is keyed by it, "
                                               "so one asset's events stay in order on one partition"}

# channel id -> (address, event name in EVENT_TYPES, who publishes, description)
CHANNELS: dict[str, tuple[str, str, str, str]] = {
    "mediaUploaded": ("media.uploaded", "media.uploaded", "producers/outbox_relay.py (from the ingest outbox)",
                      "An asset's original is stored and its row committed: the pipeline's input."),
    "mediaBackfill": ("media.backfill.{model}", "media.uploaded", "argus reindex",
                      "Uploads re-published for ONE model's processors (a model enabled later, a new version)."),
    "annotations": ("annotations.{model}", "annotation", "processors/runtime.py (one consumer group per model)",
                    "One model's annotation of an asset (an image, a video keyframe, or a video's summary with "
                    "keyframe_ms null). Deduplicate by annotation_id; the newest produced_at wins."),
    "deadLetters": ("media.dlq", "dead_letter", "processors, sinks",
                    "What could not be processed, with the reason (the asset's model status becomes failed)."),
    "mediaLifecycle": ("media.lifecycle", "media.lifecycle", "the API and sinks/lifecycle_sink.py (docs/metadata.md)",
                       "Kills, deletes, restores, embargoes and metadata edits of an asset."),
    "mediaLifecycleRequests": ("media.lifecycle.requests", "media.lifecycle.request",
                               "producers/agency.py (via the outbox)",
                               "A producer's request to kill, withhold or release an asset it delivered (an agency's "
                               "canceled / withheld notice); applied exactly once by sinks/lifecycle_sink.py, whose "
                               "effect is then a media.lifecycle event. Internal: subscribers read media.lifecycle."),
    "assetsAnnotated": ("assets.annotated", "assets.annotated", "sinks/aggregate_sink.py (via the outbox)",
                        "One event per asset when every expected model is final; an update supersedes the "
                        "previous one. Deduplicate by event_id (re-emissions are byte-identical)."),
}
MODEL_PARAM = {"description": "an annotation model's name (`argus models list`, models/registry.py), "
                              "e.g. efficientnet_lite0, face_mtcnn, ocr_ppocr, text_embed"}


def _message_name(event: str) -> str:
    return EVENT_TYPES[event].__name__


def _rewrite_refs(node: Any) -> Any:
    """pydantic's ``#/$defs/X`` -> ``#/components/schemas/X``; its OpenAPI-style discriminator object -> the
    property name (AsyncAPI's Schema Object has ``discriminator: string``)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "discriminator" and isinstance(v, dict) and "propertyName" in v:
                out[k] = v["propertyName"]
            else:
                out[k] = _rewrite_refs(v)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    if isinstance(node, str) and node.startswith("#/$defs/"):
        return "#/components/schemas/" + node[len("#/$defs/"):]
    return node


def _schemas() -> dict[str, Any]:
    """Every event's JSON Schema and its nested definitions, hoisted into components/schemas."""
    schemas: dict[str, Any] = {}
    for model in EVENT_TYPES.values():
        schema = model.model_json_schema(by_alias=True, mode="serialization", ref_template="#/$defs/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            sub = _rewrite_refs(sub)
            if schemas.setdefault(name, sub) != sub:
                raise ValueError(f"two different schemas named {name!r}: rename one of the pydantic models")
        schemas[model.__name__] = _rewrite_refs(schema)
    return dict(sorted(schemas.items()))


def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cid, (address, event, publisher, description) in CHANNELS.items():
        msg = _message_name(event)
        messages[msg] = {
            "name": msg,
            "title": f"{event} v{SCHEMA_VERSION}",
            "summary": (EVENT_TYPES[event].__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{msg}"},
            "bindings": {"kafka": {"key": KEY_ASSET, "bindingVersion": "0.5.0"}},
        }
        channel: dict[str, Any] = {
            "address": address,
            "title": address,
            "description": f"{description} Published by {publisher}.",
            "messages": {msg: {"$ref": f"#/components/messages/{msg}"}},
        }
        if "{model}" in address:
            channel["parameters"] = {"model": MODEL_PARAM}
        channels[cid] = channel
        operations[f"receive{cid[0].upper()}{cid[1:]}"] = {
            "action": "receive",
            "title": f"consume {address}",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{msg}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "id": "urn:argus:events",
        "info": {
            "title": "Argus events",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "Every Kafka topic Argus publishes, its key and its JSON payload (generated from schemas/events.py). "
                "Events carry `schema` and `schema_version`; ids are deterministic, so duplicates share them. "
                "An installation's `kafka.topic_prefix` is prepended to every address. Client compatibility with "
                "the embedded broker: docs/interfaces.md."),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {"host": "127.0.0.1:19092", "protocol": "kafka",
                         "description": "the embedded broker of `argus up` / `argus serve` (tansu 0.6.0)"},
            "compose": {"host": "kafka:9092", "protocol": "kafka",
                        "description": "Apache Kafka of the compose stack (compose/)"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": dict(sorted(messages.items())), "schemas": _schemas()},
    }


def render() -> dict[str, str]:
    doc = document()
    return {JSON_FILE: json.dumps(doc, indent=2) + "\n",
            YAML_FILE: yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)}


def write(directory: Path = OUT_DIR) -> list[Path]:
    return write_files(render(), directory)


if __name__ == "__main__":
    for p in write():
        print(p)
