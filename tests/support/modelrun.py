"""One model's processor + the sinks on an isolated database, with media in: what each model's integration
tests share (the model's own assertions stay in its test file)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from core.settings import Settings

Media = dict[str, tuple[bytes, str]]  # key -> (content, filename)


@contextmanager
def model_run(base: Settings, db_name: str, models: list[str], media: Media,
              configure: Callable[[Settings], None] | None = None,
              timeout: float = 600) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Start relay + the ``models``' processors + sinks on a fresh database/topic prefix, ingest ``media``,
    wait until every model is done with every asset; yield (settings, {key: asset_id})."""
    from argus import pipeline
    from argus.workers import Supervisor, default_workers
    from core import kafka
    from producers.ingest import Ingestor, Metadata
    from tests.support.stack import isolated_settings

    s = isolated_settings(base, db_name)
    s.models = list(models)
    if configure is not None:
        configure(s)
    kafka.ensure_topics(s, kafka.all_topics(s, s.models))
    sup = Supervisor(s, default_workers(s))
    assert {f"processor-{m}" for m in models} <= set(sup.workers), f"not started: {set(sup.workers)}"
    sup.start()
    try:
        ing = Ingestor(s)
        ids = {key: ing.ingest_bytes(blob, Metadata(filename=name)).asset_id for key, (blob, name) in media.items()}
        for model in models:
            final = pipeline.wait_until_done(s, list(ids.values()), model, timeout=timeout)
            assert final.done and final.failed == 0, f"{model}: {final}; dead workers: {sup.dead()}"
        yield s, ids
    finally:
        sup.stop()


def annotations(s: Settings, asset_id: str, model: str) -> list[dict[str, Any]]:
    """The asset's annotation rows of ``model``: the image's or video summary's first, then keyframes."""
    from core import db

    with db.connect(s) as conn:
        return list(conn.execute(
            "SELECT keyframe_ms, model_version, payload FROM annotations WHERE asset_id=%s AND model=%s "
            "ORDER BY keyframe_ms NULLS FIRST", (asset_id, model)).fetchall())
