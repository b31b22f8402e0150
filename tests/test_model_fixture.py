"""A model added with only its folder, its class and one registry line is pulled, served, processed, searched and
listed in compose (the architecture's promise, docs/architecture.md and CONTRIBUTING.md).

The fixture model ``swatch`` (tests/support/fixture_model/) names an image's dominant colour. Its Triton folder is
put into a copy of the model repository (symlinks to the real model folders + the fixture's folder), its class is
registered through ``Settings.model_plugins``, and nothing else in Argus changes. A Triton of its own serves that
repository (the session's Triton serves the real one); PostgreSQL, the broker and the object store are the
session's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from argus import deploy, pipeline
from argus.stack.ports import free_ports
from argus.stack.triton import TritonService
from argus.workers import Supervisor, default_workers
from core import kafka
from core.settings import Settings
from models import registry, store
from producers.ingest import Ingestor, Metadata
from retrieval.search import get_search_index
from retrieval.search.interface import SearchQuery
from tests.support.fixture_model.swatch import Swatch
from tests.support.stack import isolated_settings

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parent / "support" / "fixture_model"
PLUGIN = "tests.support.fixture_model.swatch:Swatch"


def colour_png(rgb: tuple[int, int, int]) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), rgb, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def swatch_settings(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("repo")
    repo = root / "triton_repo"
    repo.mkdir()
    for folder in stack_settings.triton_repo.iterdir():  # every registered model, as they are
        if (folder / "config.pbtxt").exists():
            (repo / folder.name).symlink_to(folder)
    shutil.copytree(FIXTURE / "triton_repo" / "swatch", repo / "swatch")  # the new model's folder
    s = isolated_settings(stack_settings, "t_model_fixture")
    s.repo_root = root
    s.state_dir = root / "state"
    s.model_plugins = [PLUGIN]  # the one registry line
    s.models = ["swatch"]
    s.triton.models = ["swatch"]
    http, grpc, metrics = free_ports(3)
    s.ports.triton_http, s.ports.triton_grpc, s.ports.triton_metrics = http, grpc, metrics
    store.pull(s, "swatch")
    triton = TritonService(s)
    triton.start()
    triton.wait_healthy()
    try:
        yield s
    finally:
        triton.stop()


def test_registered_listed_and_consistent(swatch_settings: Settings) -> None:
    s = swatch_settings
    assert registry.model_classes(s)["swatch"] is Swatch
    assert registry.repo_problems(s) == []
    (row,) = [r for r in store.list_models(s) if r.name == "swatch"]
    assert row.available and row.version.startswith("swatch-")


def test_served_and_verified(swatch_settings: Settings) -> None:
    report = store.verify(swatch_settings, names=["swatch"])
    assert report.ok, str(report)


def test_processed_and_searched(swatch_settings: Settings) -> None:
    s = swatch_settings
    kafka.ensure_topics(s, kafka.all_topics(s, ["swatch"]))
    sup = Supervisor(s, default_workers(s))
    assert "processor-swatch" in sup.workers
    sup.start()
    try:
        ing = Ingestor(s)
        ids = {name: ing.ingest_bytes(colour_png(rgb), Metadata(filename=f"{name}.png")).asset_id
               for name, rgb in {"red": (230, 20, 10), "green": (10, 200, 30), "blue": (20, 30, 220)}.items()}
        final = pipeline.wait_until_done(s, list(ids.values()), "swatch", timeout=180)
        assert final.done and final.failed == 0, f"{final}; dead workers: {sup.dead()}"
    finally:
        sup.stop()
    index = get_search_index(s)
    for name, asset_id in ids.items():
        hits = index.search(SearchQuery(labels=(name,))).hits
        assert [h.asset_id for h in hits] == [asset_id], name


def test_listed_in_compose(swatch_settings: Settings) -> None:
    rendered = "\n".join(deploy.render(swatch_settings).values())
    assert "processor-swatch" in rendered
