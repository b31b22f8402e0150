"""Observing the pipeline from the outside: how far each asset has got (used by the demo,
the benchmarks and the tests; Kafka lag cannot be trusted on tansu, PostgreSQL can)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from core import db
from core.settings import Settings


@dataclass(frozen=True)
class Progress:
    total: int
    annotated: int  # rows in annotations (system of record)
    indexed: int  # search docs holding the model's annotation
    failed: int  # asset/model pairs marked failed (dead-lettered)

    @property
    def finished(self) -> int:
        return min(self.annotated, self.indexed) + self.failed

    @property
    def done(self) -> bool:
        return self.finished >= self.total


def progress(settings: Settings, asset_ids: list[str], model: str) -> Progress:
    with db.connect(settings) as conn:
        annotated = db.scalar(
            conn, "SELECT count(DISTINCT asset_id) FROM annotations WHERE asset_id = ANY(%s) AND model=%s",
            (asset_ids, model),
        )
        indexed = db.scalar(
            conn, "SELECT count(*) FROM search_docs WHERE asset_id = ANY(%s) AND models ? %s", (asset_ids, model)
        )
        failed = db.scalar(
            conn, "SELECT count(*) FROM asset_model_status WHERE asset_id = ANY(%s) AND model=%s AND status='failed'",
            (asset_ids, model),
        )
    return Progress(len(asset_ids), annotated, indexed, failed)


def wait_until_done(settings: Settings, asset_ids: list[str], model: str, timeout: float,
                    on_progress: Callable[[Progress], None] | None = None, poll_s: float = 0.25) -> Progress:
    deadline = time.monotonic() + timeout
    while True:
        p = progress(settings, asset_ids, model)
        if on_progress:
            on_progress(p)
        if p.done or time.monotonic() > deadline:
            return p
        time.sleep(poll_s)
