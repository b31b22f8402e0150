"""Session fixtures: ONE real embedded stack (SeaweedFS, tansu on durable S3 storage, PostgreSQL,
Triton) on free loopback ports in a temp state dir; each test module gets its own database and
topic prefix on it, so modules never see each other's assets or events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from argus.stack.manager import EmbeddedStack, running_stack
from argus.stack.ports import settings_for_tests
from core.settings import Settings
from tests.support.stack import SESSION_MODELS, isolated_settings


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = settings_for_tests(tmp_path_factory.mktemp("argus-state"))
    settings.models = list(SESSION_MODELS)
    settings.processor.retry_max_wait_s = 2.0
    settings.kafka.session_timeout_ms = 3000
    with running_stack(settings):
        yield settings


@pytest.fixture(scope="session")
def stack(stack_settings: Settings) -> EmbeddedStack:
    return EmbeddedStack(stack_settings)


@pytest.fixture
def env(stack_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return isolated_settings(stack_settings, f"t_{request.node.name}")


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from argus.samples import export_samples

    return export_samples(tmp_path_factory.mktemp("samples"))
