"""The per-asset aggregate (sinks/aggregate_sink.py) through real processors: exactly one distinct
`assets.annotated` per asset once its expected models are final, with the aggregate killed -9 mid-stream and
crashed in its commit window; duplicates on the topic only as byte-identical re-emissions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

from argus.verify import read_topic
from argus.workers import Supervisor, Worker
from core import db, kafka
from core.settings import Settings
from producers.ingest import Ingestor, Metadata
from schemas.events import AssetAnnotated, parse
from schemas.jsonschema import JSON_DIR
from tests.test_exactly_once import variants

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODELS = ["efficientnet_lite0", "pdq", "text_embed"]

def emitted(s: Settings, ids: list[str]) -> int:
    with db.connect(s) as conn:
        return int(db.scalar(conn, """SELECT count(*) FROM asset_aggregates
                                      WHERE asset_id = ANY(%s) AND emitted_event_id IS NOT NULL""", (ids,)))


def test_one_event_per_asset_exactly_once_under_kill9(env: Settings, sample_files: list[Path]) -> None:
    s = env.model_copy(deep=True)
    s.models = MODELS
    kafka.ensure_topics(s, [s.topic(kafka.TOPIC_ANNOTATED)])
    workers = [Worker("relay", ["run", "relay"])] + [Worker(f"processor-{m}", ["run", "processor", m]) for m in MODELS]
    # the first aggregate instance dies in its first commit window (rows + outbox + offsets written, not committed;
    # the first, because when the records arrive in one batch there is no second one)
    agg = Worker("sink-aggregate", ["run", "sink", "aggregate"], extra_env={"ARGUS_FAULT": "sink.before_commit:1"})
    sup = Supervisor(s, [*workers, agg])
    sup.start()
    try:
        ing = Ingestor(s)
        ids: list[str] = []
        files = variants(sample_files, 12)

        def ingest(batch: list[tuple[str, bytes]], start: int) -> None:
            for i, (name, data) in enumerate(batch, start):
                meta = Metadata(filename=name, title="A cat on a chair" if i % 2 else None)
                ids.append(ing.ingest_bytes(data, meta).asset_id)
                time.sleep(0.3)

        ingest(files[:6], 0)  # the first half: the aggregate crashes in its commit window, then is restarted
        deadline = time.monotonic() + 240
        crashed = kills = 0
        while time.monotonic() < deadline and not (crashed and emitted(s, ids) >= 1):
            time.sleep(0.3)
            if agg.proc is not None and agg.proc.poll() is not None:  # the fault hook fired: restart without it
                agg.extra_env.pop("ARGUS_FAULT", None)
                sup.restart("sink-aggregate")
                crashed += 1
        sup.kill("sink-aggregate")  # then kill -9, with the second half still to come
        sup.restart("sink-aggregate")
        kills += 1
        ingest(files[6:], 6)
        while emitted(s, ids) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert emitted(s, ids) == len(ids), f"{emitted(s, ids)} of {len(ids)} assets emitted"
        assert crashed == 1 and kills == 1, (crashed, kills)
        time.sleep(3)  # the relay publishes the last outbox rows
        raw = [m.value() or b"" for m in read_topic(s, s.topic(kafka.TOPIC_ANNOTATED))]
    finally:
        sup.stop()

    schema = json.loads((JSON_DIR / "assets.annotated.v1.schema.json").read_text())
    by_id: dict[str, bytes] = {}
    per_asset: dict[str, set[str]] = {}
    duplicates = 0
    for r in raw:
        jsonschema.validate(json.loads(r), schema)
        ev = parse(r, AssetAnnotated)
        if ev.event_id in by_id:
            assert by_id[ev.event_id] == r, "a re-emission differs from the original"
            duplicates += 1
        by_id[ev.event_id] = r
        per_asset.setdefault(ev.asset_id, set()).add(ev.event_id)
    assert sorted(per_asset) == sorted(ids)
    assert all(len(v) == 1 for v in per_asset.values()), per_asset  # one distinct event per asset
    for r in by_id.values():
        ev = parse(r, AssetAnnotated)
        assert [(o.model, o.status) for o in ev.models] == [(m, "done") for m in MODELS], ev.models
        assert {e.model for e in ev.embeddings} == {"efficientnet_lite0", "text_embed"}  # by reference
        assert '"embedding":' not in r.decode()  # no vector inline
        assert ev.labels and ev.asset.filename
    with db.connect(s) as conn:  # the aggregate's outbox rows: exactly one per asset
        n = db.scalar(conn, "SELECT count(*) FROM outbox WHERE topic=%s", (s.topic(kafka.TOPIC_ANNOTATED),))
    assert n == len(ids)
    print(f"assets {len(ids)}, events on the topic {len(raw)}, distinct {len(by_id)}, "
          f"byte-identical duplicates {duplicates}")


def test_embargo_released_without_traffic_and_a_kill_after_the_event(env: Settings, sample_files: list[Path]) -> None:
    """An embargoed asset's event goes out within seconds of the embargo's end although no record arrives (the sink's
    tick); a kill after the event was emitted reaches subscribers as a ``media.lifecycle`` kill on its own topic, the
    aggregate's rows go with the kill, and a replay of the asset's records emits nothing again."""
    from datetime import UTC, datetime, timedelta

    from schemas.events import MediaLifecycle, MediaUploaded, dump
    from sinks import lifecycle

    s = env.model_copy(deep=True)
    s.models = ["pdq"]
    kafka.ensure_topics(s, [*kafka.all_topics(s, s.models), s.topic(kafka.TOPIC_ANNOTATED)])
    sup = Supervisor(s, [Worker("relay", ["run", "relay"]), Worker("processor-pdq", ["run", "processor", "pdq"]),
                         Worker("sink-aggregate", ["run", "sink", "aggregate"])])
    sup.start()
    try:
        ing = Ingestor(s)
        (n1, d1), (n2, d2) = variants(sample_files, 2)
        until = datetime.now(UTC) + timedelta(seconds=25)
        held = ing.ingest_bytes(d1, Metadata(filename=n1, embargo_until=until)).asset_id
        free = ing.ingest_bytes(d2, Metadata(filename=n2)).asset_id
        deadline = time.monotonic() + 120
        while emitted(s, [free]) < 1 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert emitted(s, [free]) == 1, "the free asset's event"
        with db.connect(s) as conn:
            row = conn.execute("SELECT emitted_event_id FROM asset_aggregates WHERE asset_id=%s", (held,)).fetchone()
            n_models = db.scalar(conn, "SELECT count(*) FROM asset_aggregate_models WHERE asset_id=%s", (held,))
        assert row is not None and row["emitted_event_id"] is None and n_models == 1  # complete, but held
        # no record arrives from here on: the release must come from the tick
        while emitted(s, [held]) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        with db.connect(s) as conn:
            at = conn.execute("SELECT emitted_at FROM asset_aggregates WHERE asset_id=%s", (held,)).fetchone()
        assert at is not None and at["emitted_at"] is not None, "the embargoed asset was never released"
        late = (at["emitted_at"] - until).total_seconds()
        print(f"\nembargo release without traffic: event written {late:.2f} s after the embargo's end")
        assert 0 <= late < 5, late

        # ---- a kill after the event: subscribers get media.lifecycle (kill); the aggregate forgets the asset
        lifecycle.apply(s, free, "kill", actor="legal", reason="agency kill")
        with db.connect(s) as conn:
            assert db.scalar(conn, "SELECT count(*) FROM asset_aggregates WHERE asset_id=%s", (free,)) == 0
            assert db.scalar(conn, "SELECT count(*) FROM asset_aggregate_models WHERE asset_id=%s", (free,)) == 0
            up = conn.execute("SELECT payload FROM outbox WHERE event_id=%s", (f"upl-{free[:40]}",)).fetchone()
        p = kafka.producer(s)  # a replay of its upload: dropped (tombstoned), nothing re-emitted
        replay = parse(bytes(up["payload"]), MediaUploaded)
        p.produce(s.topic(kafka.TOPIC_UPLOADED), key=free, value=dump(replay))
        p.flush(30)
        time.sleep(4)
        annotated = [parse(m.value(), AssetAnnotated) for m in read_topic(s, s.topic(kafka.TOPIC_ANNOTATED))]
        kills = [parse(m.value(), MediaLifecycle) for m in read_topic(s, s.topic(kafka.TOPIC_LIFECYCLE))]
        with db.connect(s) as conn:
            assert db.scalar(conn, "SELECT count(*) FROM asset_aggregates WHERE asset_id=%s", (free,)) == 0
    finally:
        sup.stop()
    assert sorted({e.asset_id for e in annotated}) == sorted([held, free])
    assert len({e.event_id for e in annotated if e.asset_id == free}) == 1  # nothing re-emitted after the kill
    assert [(e.asset_id, e.action, e.reason) for e in kills if e.action == "kill"] == [(free, "kill", "agency kill")]
