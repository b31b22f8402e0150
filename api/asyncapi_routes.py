"""The AsyncAPI 3.0 document of every topic (generated from the pydantic events by schemas/asyncapi.py), served
with this installation's topic prefix and broker address: ``GET /v1/asyncapi.json`` and ``GET /v1/asyncapi.yaml``."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import settings_of
from schemas import asyncapi

router = APIRouter(prefix="/v1", tags=["events"])


def installed_document(request: Request) -> dict[str, Any]:
    settings = settings_of(request)
    doc = asyncapi.document()
    prefix = settings.kafka.topic_prefix
    for channel in doc["channels"].values():
        channel["address"] = prefix + channel["address"]
        channel["title"] = channel["address"]
    for op in doc["operations"].values():
        op["title"] = op["title"].replace("consume ", "consume " + prefix, 1)
    doc["servers"]["embedded"]["host"] = settings.kafka_bootstrap.split(",")[0]
    return doc


@router.get("/asyncapi.json")
def asyncapi_json(request: Request) -> dict[str, Any]:
    return installed_document(request)


@router.get("/asyncapi.yaml")
def asyncapi_yaml(request: Request) -> Response:
    text = yaml.safe_dump(installed_document(request), sort_keys=False, allow_unicode=True, width=120)
    return Response(text, media_type="application/yaml")
