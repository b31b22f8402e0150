"""Isolated settings on the session's embedded stack, and loading extra models into its Triton."""

from __future__ import annotations

import re

import psycopg
import tritonclient.http as httpclient

from core import db, kafka
from core.settings import Settings
from models import store
from models.registry import enabled_models
from retrieval.search import get_search_index

# the pipeline tests (exactly-once, chaos, security ...) run these processors; the other models (COCO, NSFW, CLIP,
# captioning) have their own test files and are loaded there with load_models()
SESSION_MODELS = ("efficientnet_lite0", "pdq", "face_mtcnn", "ocr_ppocr", "text_embed")


def isolated_settings(base: Settings, name: str) -> Settings:
    """A copy of ``base`` with its own database and topic prefix (created + migrated)."""
    name = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40]
    s = base.model_copy(deep=True)
    s.postgres.database = name
    s.kafka.topic_prefix = f"{name}."
    with psycopg.connect(base.postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    db.migrate(s)
    get_search_index(s).ensure_schema()  # what the search sink does at start (OpenSearch: index template)
    kafka.ensure_topics(s, kafka.all_topics(s, enabled_models(s)))
    return s


def load_models(settings: Settings, names: list[str]) -> None:
    """Pull ``names`` and load them into the session's Triton (explicit model control), for tests of
    models that are not in the session's model set (optional extras, CLIP with test weights).
    A model already loaded is reloaded, so a test that re-pulled different weights gets them."""
    client = httpclient.InferenceServerClient(url=settings.triton_url, network_timeout=600.0)
    try:
        for name in names:
            store.pull(settings, name)
            client.load_model(name)
            assert client.is_model_ready(name), f"{name} did not become ready in Triton"
    finally:
        client.close()
