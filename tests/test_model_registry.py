"""The model registry against triton_repo/, and models verify through the session's Triton."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from models import registry, store

SUITE = ["efficientnet_lite0", "face_mtcnn", "ocr_ppocr", "text_embed"]


def test_registry_covers_every_repo_folder() -> None:
    assert registry.repo_problems(Settings()) == []
    assert set(SUITE) <= set(registry.model_classes(Settings()))


@pytest.mark.integration
def test_models_verify_through_triton(stack_settings: Settings) -> None:
    report = store.verify(stack_settings, names=[m for m in SUITE if m in registry.triton_models(stack_settings)])
    assert report.ok, str(report)
    text = str(report)
    assert "astronaut: 1 face(s)" in text and "cat photo: 0 face(s)" in text
    assert "read back as ['HELLO WORLD 2024', 'Media asset search']" in text


def test_every_model_has_its_test_module() -> None:
    """One test module per model; a companion (no processor of its own) is tested with the model it serves."""
    here = Path(__file__).resolve().parent
    owners = {c: cls.name for cls in registry.MODELS for c in cls.companions}
    missing = [cls.name for cls in registry.MODELS
               if not (here / f"test_model_{owners.get(cls.name, cls.name)}.py").exists()]
    assert missing == []
