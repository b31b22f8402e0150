"""Agency status notices for items already ingested (producers/agency.py -> media.lifecycle.requests ->
sinks/lifecycle_sink.py), against the real embedded servers and workers:

- a ninjs item and a NewsML-G2 item are ingested and annotated (media_metadata, pdq, renditions), then their
  ``canceled`` versions arrive: each asset is killed through the API's kill machinery, gone from search (hidden
  included), every table, the near-duplicate hashes, the objects (the original in quarantine) and the web app, with
  a tombstone whose reason names the item; subscribers get one ``media.lifecycle`` kill per asset;
- the lifecycle sink dies in its commit window (fault hook) on the first notice and is killed -9 while the others
  arrive; the same notice redelivered, a second different notice for the same item and a replay of the request
  records onto the topic change nothing: one tombstone, one kill per asset (0 lost, 0 applied twice);
- a ``withheld`` notice holds an asset (an embargo without end), its usable version releases it;
- the item's usable version delivered again after the kill never resurrects it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import db, kafka
from core.settings import Settings
from retrieval.search import get_search_index
from retrieval.search.interface import SearchQuery
from schemas.events import WITHHELD_UNTIL, LifecycleRequest, MediaLifecycle, dump, parse
from sinks import lifecycle
from tests.test_agency import NEWSML

pytestmark = pytest.mark.integration
MODELS = ["media_metadata", "pdq", "renditions"]


def wait_for(pred: Callable[[], Any], timeout: float = 90.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (got := pred()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or pred}"
        time.sleep(0.3)
    return got


def ninjs(uri: str, caption: str, status: str = "usable", **extra: Any) -> bytes:
    doc = {"uri": uri, "type": "picture", "pubStatus": status, "headlines": [{"role": "main", "value": caption}],
           "descriptions": [{"role": "caption", "value": caption}], "by": "Jane Doe",
           "renditions": {"original": {"href": "photo.jpg", "mimetype": "image/jpeg"}}, **extra}
    return json.dumps(doc).encode()


def deliver(folder: Path, name: str, document: bytes, photo: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if photo is not None:
        (folder / "photo.jpg").write_bytes(photo)
    (folder / name).write_bytes(document)
    return folder / name


def state(s: Settings, asset_id: str) -> lifecycle.State:
    with db.connect(s) as conn:
        return lifecycle.state_of(conn, asset_id)


def kills_logged(s: Settings, asset_id: str) -> int:
    with db.connect(s) as conn:
        return int(db.scalar(conn, "SELECT count(*) FROM asset_lifecycle_log WHERE asset_id=%s AND action='kill'",
                             (asset_id,)))


def test_canceled_notice_kills_exactly_once_under_kill9_and_withheld_holds(
        stack_settings: Settings, sample_files: list[Path], tmp_path: Path) -> None:
    from api.app import create_app
    from argus import pipeline
    from argus.workers import Supervisor, default_workers
    from core.auth import create_key
    from producers.agency import ingest_document
    from producers.ingest import Ingestor
    from tests.support.stack import isolated_settings
    from tests.test_exactly_once import count_records, stored_offsets, variants
    from tests.test_metadata_rights import _objects, _read_all, _rows

    s = isolated_settings(stack_settings, "t_agency_cancel")
    s.models = list(MODELS)
    kafka.ensure_topics(s, kafka.all_topics(s, s.models))
    workers = default_workers(s)
    sink = next(w for w in workers if w.name == "sink-lifecycle")
    sink.extra_env["ARGUS_FAULT"] = "sink.before_commit:1"  # dies in its commit window on the first notice
    sup = Supervisor(s, workers)
    sup.start()
    try:
        ing = Ingestor(s)
        photos = [data for _, data in variants(sample_files, 4)]
        # four items: ninjs A (canceled later), NewsML-G2 B (canceled later), ninjs C (withheld, then usable), D stays
        a = ingest_document(ing, deliver(tmp_path / "a", "a.json", ninjs("urn:ap:a", "Quokka parade"), photos[0]),
                            source="ap")
        b = ingest_document(ing, deliver(tmp_path / "b", "b.xml", NEWSML.replace(b"<embargoed>2030-01-01T09:00:00Z"
                            b"</embargoed>", b"").replace(b"Elbe bridge opens", b"Quokka bridge"), photos[1]),
                            source="reuters")
        c = ingest_document(ing, deliver(tmp_path / "c", "c.json", ninjs("urn:ap:c", "Quokka withheld"), photos[2]),
                            source="ap")
        d = ingest_document(ing, deliver(tmp_path / "d", "d.json", ninjs("urn:ap:d", "Quokka survivor"), photos[3]),
                            source="ap")
        assert [r.outcome for r in (a, b, c, d)] == ["ingested"] * 4
        ida, idb, idc, idd = (r.ingest.asset_id for r in (a, b, c, d))  # type: ignore[union-attr]
        ids = [ida, idb, idc, idd]
        for m in MODELS:
            final = pipeline.wait_until_done(s, ids, m, timeout=300)
            assert final.done and final.failed == 0, (m, final, sup.dead())
        index = get_search_index(s)

        def found(text: str, hidden: bool = False) -> set[str]:
            return {h.asset_id for h in index.search(SearchQuery(text=text, limit=50, include_hidden=hidden)).hits}

        wait_for(lambda: found("quokka") == set(ids), what="the four items in search")

        # ---- A canceled: the lifecycle sink crashes in its commit window, is restarted, applies it once
        ca = ingest_document(ing, deliver(tmp_path / "a", "a-kill.json", ninjs("urn:ap:a", "Quokka parade",
                                                                                 "canceled", version="2")), source="ap")
        assert (ca.outcome, ca.requested) == ("canceled", [ida])
        wait_for(lambda: sink.proc is not None and sink.proc.poll() is not None, what="the fault hook")
        sink.extra_env.pop("ARGUS_FAULT")
        assert state(s, ida).state == "active"  # the crashed transaction left nothing
        sup.restart("sink-lifecycle")
        wait_for(lambda: state(s, ida).state == "killed", what="A killed")

        # ---- B canceled (NewsML-G2) and C withheld while the sink is killed -9; A's notice redelivered twice
        sup.kill("sink-lifecycle")  # SIGKILL, then two notices arrive while it is down
        cb = ingest_document(ing, deliver(tmp_path / "b", "b-kill.xml", NEWSML.replace(b"stat:usable",
                                                                                        b"stat:canceled")),
                            source="reuters")
        cc = ingest_document(ing, deliver(tmp_path / "c", "c-hold.json", ninjs("urn:ap:c", "x", "withheld")))
        sup.restart("sink-lifecycle")
        time.sleep(2.5)  # it joins its group and starts on them
        sup.kill("sink-lifecycle")  # whatever it was doing: SIGKILL again
        again = ingest_document(ing, tmp_path / "a" / "a-kill.json", source="ap")  # the same notice and request
        kill2 = ninjs("urn:ap:a", "Quokka parade", "canceled", version="3")  # another notice, same item
        other = ingest_document(ing, deliver(tmp_path / "a", "a-kill2.json", kill2), source="ap")
        assert (cb.requested, cc.requested, again.requested, other.requested) == ([idb], [idc], [ida], [ida])
        sup.restart("sink-lifecycle")
        wait_for(lambda: state(s, idb).state == "killed" and state(s, idc).embargo_until == WITHHELD_UNTIL,
                 what="B killed and C withheld")

        # ---- replay: the request records published again (offsets of a new consumer, the relay twice)
        with db.connect(s) as conn:
            reqs = [bytes(r["payload"]) for r in conn.execute(
                "SELECT payload FROM outbox WHERE topic=%s ORDER BY id", (s.topic(kafka.TOPIC_LIFECYCLE_REQUESTS),))]
        assert len(reqs) == 4  # A, B, C, A's second notice (the redelivered one is the same row)
        p = kafka.producer(s)
        for raw in reqs:
            req = parse(raw, LifecycleRequest)
            p.produce(s.topic(kafka.TOPIC_LIFECYCLE_REQUESTS), key=req.asset_id, value=dump(req))
        p.flush(30)

        topic = s.topic(kafka.TOPIC_LIFECYCLE_REQUESTS)
        n_records = sum(count_records(s, topic).values())
        assert n_records >= 8  # 4 requests (+ whatever the relay published twice) + 4 replayed
        wait_for(lambda: stored_offsets(s).get(("lifecycle", topic), 0) >= n_records,
                 what="the lifecycle sink to read the replay")

        # ---- the usable version of A delivered again: a duplicate, still killed; C usable again: released
        ua = ingest_document(ing, deliver(tmp_path / "a2", "a.json", ninjs("urn:ap:a", "Quokka parade"), photos[0]),
                             source="ap")
        uc = ingest_document(ing, deliver(tmp_path / "c2", "c.json", ninjs("urn:ap:c", "Quokka withheld back",
                                                                             version="3"), photos[2]), source="ap")
        assert (ua.outcome, ua.requested, uc.outcome, uc.requested) == ("duplicate", [], "duplicate", [idc])
        wait_for(lambda: state(s, idc).embargo_until is None, what="C released")

        # ---- what is left: tombstones with the reason, no trace anywhere, exactly one kill each
        time.sleep(s.ndd.refresh_interval_s + 1)
        for aid, uri in ((ida, "urn:ap:a"), (idb, "urn:newsml:reuters:1")):
            st = state(s, aid)
            assert (st.state, st.reason, st.actor) == ("killed", f"agency canceled: {uri}",
                                                       "ap:ninjs" if aid == ida else "reuters:newsml"), st
            assert kills_logged(s, aid) == 1
            wait_for(lambda aid=aid: _objects(s, aid) == [lifecycle.quarantine_key(aid)],  # type: ignore[misc]
                     what="the objects purged by the search sink")
            assert all(n == 0 for n in _rows(s, aid).values()), _rows(s, aid)
        assert found("quokka") == {idc, idd} and found("quokka", hidden=True) == {idc, idd}
        _, admin = create_key(s, ["admin"], "desk")
        client = TestClient(create_app(s))
        h = {"X-API-Key": admin}
        for aid in (ida, idb):
            for url in (f"/v1/assets/{aid}", f"/v1/assets/{aid}/original", f"/asset/{aid}"):
                assert client.get(url, headers=h, follow_redirects=False).status_code == 404, url
        assert client.get(f"/v1/assets/{idd}", headers=h).status_code == 200
        with db.connect(s) as conn:
            outcomes = {(r["asset_id"], r["action"], r["outcome"]) for r in conn.execute(
                "SELECT asset_id, action, outcome FROM lifecycle_requests").fetchall()}
            n_requests = db.scalar(conn, "SELECT count(*) FROM lifecycle_requests")
            c_log = [r["action"] for r in conn.execute(
                "SELECT action FROM asset_lifecycle_log WHERE asset_id=%s ORDER BY seq", (idc,)).fetchall()]
        assert n_requests == 5, outcomes  # A, B, C hold, A's second notice, C release
        assert outcomes == {(ida, "kill", "applied"), (idb, "kill", "applied"), (idc, "withhold", "applied"),
                            (ida, "kill", "already killed"), (idc, "release", "applied")}
        assert c_log == ["embargo", "embargo"]  # held, released: nothing twice
        events = [parse(m, MediaLifecycle) for m in _read_all(s, s.topic(kafka.TOPIC_LIFECYCLE))]
        kills = sorted(e.asset_id for e in {e.event_id: e for e in events}.values() if e.action == "kill")
        assert kills == sorted([ida, idb])  # one kill event each for subscribers (deduplicated by event id)
        print(f"\nagency notices: sink crashed 1x in its commit window + killed -9 2x; requests 4 (+1 redelivered, "
              f"+4 replayed); kills applied {len(kills)}, tombstones {sum(kills_logged(s, x) for x in ids)}, "
              f"resurrected 0")
    finally:
        sup.stop()
