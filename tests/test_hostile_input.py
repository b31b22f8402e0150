"""The hostile-input corpus (benchmarks/hostile.py) through every producer, with the workers running:
each case ends in a clear error or a dead-letter entry, and the valid assets mixed in come through
exactly once. ARGUS_UPDATE_DOCS=1 rewrites docs/hostile-input.md from this run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from argus.workers import Supervisor, default_workers
from benchmarks.hostile import HostileRun, render_markdown
from core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOC = Path(__file__).resolve().parent.parent / "docs" / "hostile-input.md"


def test_hostile_corpus_every_producer(env: Settings, tmp_path: Path) -> None:
    env.models = ["efficientnet_lite0"]  # every media processor shares processors/runtime.py
    sup = Supervisor(env, default_workers(env))
    sup.start()
    try:
        cases, verdict = HostileRun(env, tmp_path).run(timeout=240)
    finally:
        sup.stop()
    text = render_markdown(cases, verdict, "ARGUS_UPDATE_DOCS=1 python -m pytest tests/test_hostile_input.py")
    if os.environ.get("ARGUS_UPDATE_DOCS") == "1":
        DOC.write_text(text)
    print("\n" + text)
    assert len(cases) >= 25
    failed = [f"{c.cid}: expected {c.expected}; observed {c.observed}" for c in cases if not c.ok]
    assert not failed, "\n".join(failed)
    assert verdict.ok, verdict.problems
    assert sup.dead() == [] or all(sup.workers[n].proc.returncode == 0 for n in sup.dead())  # type: ignore[union-attr]
