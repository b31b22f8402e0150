"""Session fixtures: ONE real embedded stack (SeaweedFS, tansu on durable S3 storage, PostgreSQL,
Triton) on free loopback ports in a temp state dir; each test module gets its own database and
topic prefix on it, so modules never see each other's assets or events."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core import db, kafka
from core.settings import Settings

SESSION_MODELS = ("efficientnet_lite0", "pdq", "face_mtcnn", "ocr_ppocr", "text_embed")


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from argus.stack.manager import running_stack
    from argus.stack.ports import settings_for_tests

    settings = settings_for_tests(tmp_path_factory.mktemp("argus-state"))
    # the pipeline tests (exactly-once, chaos, security ...) run these processors; the other models
    # (COCO, NSFW, CLIP, captioning) have their own test files and are loaded there with load_models()
    settings.models = list(SESSION_MODELS)
    settings.processor.retry_max_wait_s = 2.0
    settings.kafka.session_timeout_ms = 3000
    with running_stack(settings):
        yield settings


@pytest.fixture(scope="session")
def stack(stack_settings: Settings):  # type: ignore[no-untyped-def]
    from argus.stack.manager import EmbeddedStack

    return EmbeddedStack(stack_settings)


def isolated_settings(base: Settings, name: str) -> Settings:
    """A copy of ``base`` with its own database and topic prefix (created + migrated)."""
    name = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40]
    s = base.model_copy(deep=True)
    s.postgres.database = name
    s.kafka.topic_prefix = f"{name}."
    admin_dsn = base.postgres_dsn
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    db.migrate(s)
    kafka.ensure_topics(s, kafka.all_topics(s, s.models))
    return s


@pytest.fixture
def env(stack_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return isolated_settings(stack_settings, f"t_{request.node.name}")


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from argus.samples import export_samples

    return export_samples(tmp_path_factory.mktemp("samples"))


def load_models(settings: Settings, names: list[str]) -> None:
    """Pull ``names`` and load them into the session's Triton (explicit model control), for tests of
    models that are not in the default ``Settings.models`` (optional extras, CLIP with test weights).
    A model already loaded is reloaded, so a test that re-pulled different weights gets them."""
    import tritonclient.http as httpclient

    from models import registry

    client = httpclient.InferenceServerClient(url=settings.triton_url, network_timeout=600.0)
    try:
        for name in names:
            registry.pull(settings, name)
            client.load_model(name)
            assert client.is_model_ready(name), f"{name} did not become ready in Triton"
    finally:
        client.close()
