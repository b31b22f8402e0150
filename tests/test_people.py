"""People: faces -> persons, curation, search by person, privacy; against the real embedded servers.

The first tests drive the people sink's write path (``PeopleSink._apply``, inside a real PostgreSQL transaction)
with descriptors carried in the events (``people.descriptors_in_events``), to check the rules directly. The last
one runs the whole pipeline on labelled face photos (tests/data/faces) with kill -9 of the people sink between
curation actions and a full replay of its topic.
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from argus import pipeline
from argus.workers import Supervisor, default_workers
from core import db, kafka
from core.settings import Settings
from core.storage import ObjectMissing, ObjectStore
from models.face_embed import descriptor_key
from producers.ingest import Ingestor, Metadata
from retrieval.people import curation, queries
from retrieval.search import get_search_index
from retrieval.search.interface import SearchQuery
from schemas.events import Annotation, Box, DescribedFace, FaceDescriptors, annotation_id
from sinks.people import assign
from sinks.people_sink import PeopleSink
from tests.support.stack import isolated_settings, load_models

FACES = Path(__file__).resolve().parent / "data" / "faces"
RNG = np.random.default_rng(7)
CENTRES = {name: (lambda v: v / np.linalg.norm(v) * 0.9)(RNG.normal(size=128)) for name in ("ann", "bob", "cy")}


def face_vec(who: str, noise: float = 0.12) -> np.ndarray:
    """A synthetic descriptor: the person's centre plus noise (same person ~0.2-0.3 apart, others ~1.3)."""
    v = CENTRES[who] + RNG.normal(size=128) * noise / np.sqrt(128)
    return v.astype(np.float32)


def add_asset(conn: db.Conn, asset_id: str, collection: str | None = None) -> None:
    conn.execute("""INSERT INTO assets (asset_id, bucket, object_key, media_type, content_type, size_bytes, filename,
                                        collection) VALUES (%s,'b',%s,'image','image/jpeg',1,%s,%s)""",
                 (asset_id, asset_id, f"{asset_id}.jpg", collection))
    conn.execute("INSERT INTO search_docs (asset_id, media_type, filename, uploaded_at) VALUES (%s,'image',%s,now())",
                 (asset_id, f"{asset_id}.jpg"))


def annotate(s: Settings, asset_id: str, faces: list[np.ndarray | None], collection: str | None = None) -> list[str]:
    """Apply one face annotation through the people sink's write path; returns the face ids."""
    aid = annotation_id(asset_id, "face_embed", "test", None)
    payload = FaceDescriptors(detector="dlib", face_count=len(faces), faces=[
        DescribedFace(box=Box(x1=0.1 * i, y1=0.1, x2=0.1 * i + 0.1, y2=0.3), score=0.99, size_px=100 if v is not None
                      else 12, sharpness=100, recognisable=v is not None,
                      descriptor=[float(x) for x in v] if v is not None else None)
        for i, v in enumerate(faces)])
    ann = Annotation(event_id=f"ann-{aid}", annotation_id=aid, asset_id=asset_id, model="face_embed",
                     model_version="test", payload=payload)
    sink = PeopleSink(s, ["face_embed"])
    with db.transaction(s) as conn:
        if conn.execute("SELECT 1 FROM assets WHERE asset_id=%s", (asset_id,)).fetchone() is None:
            add_asset(conn, asset_id, collection)
        assign.lock(conn)
        sink._apply(conn, ann, payload)
    return [f"{aid}-{i}" for i in range(len(faces))]


def person_of(s: Settings, face_id: str) -> str | None:
    with db.connect(s) as conn:
        row = conn.execute("SELECT person_id FROM people_faces WHERE face_id=%s", (face_id,)).fetchone()
    return None if row is None else row["person_id"]


@pytest.fixture
def people(env: Settings) -> Settings:
    env.people.recluster_every = 0  # the tests re-cluster explicitly
    return env


def test_incremental_assignment_same_person_joins_other_person_does_not(people: Settings) -> None:
    s = people
    a1 = annotate(s, "a1", [face_vec("ann")])[0]
    a2 = annotate(s, "a2", [face_vec("ann"), face_vec("bob")])
    small = annotate(s, "a3", [None])[0]  # too small: a detection, never clustered
    assert person_of(s, a2[0]) == person_of(s, a1) != person_of(s, a2[1])
    assert person_of(s, small) is None
    # a redelivered annotation changes nothing
    annotate(s, "a1", [face_vec("ann")])
    with db.connect(s) as conn:
        assert db.scalar(conn, "SELECT count(*) FROM people_faces") == 4
    listed = queries.list_persons(s)
    assert [p["assets"] for p in listed["persons"]] == [2, 1]
    assert listed["persons"][0]["cover"]["asset_id"] in ("a1", "a2")


def test_naming_propagates_to_search_and_and_or_filters(people: Settings) -> None:
    s = people
    f1 = annotate(s, "n1", [face_vec("ann")])[0]
    annotate(s, "n2", [face_vec("ann"), face_vec("bob")])
    bob = annotate(s, "n3", [face_vec("bob")])[0]
    ann_id, bob_id = person_of(s, f1), person_of(s, bob)
    assert ann_id and bob_id
    curation.name_person(s, ann_id, "Ann Lee")
    idx = get_search_index(s)

    def ids(q: SearchQuery) -> list[str]:
        return sorted(h.asset_id for h in idx.search(q).hits)

    assert ids(SearchQuery(persons=("ann lee",))) == ["n1", "n2"]  # by name, case-insensitive
    assert ids(SearchQuery(persons=(ann_id, bob_id))) == ["n2"]  # AND: photos with both
    assert ids(SearchQuery(any_persons=("Ann Lee", bob_id))) == ["n1", "n2", "n3"]  # OR
    facets = idx.search(SearchQuery(facets=("persons",))).facets["persons"]
    assert facets == {ann_id: 2, bob_id: 2}
    curation.hide_person(s, bob_id)
    assert idx.search(SearchQuery(facets=("persons",))).facets["persons"] == {ann_id: 2}


def test_merge_split_remove_undo_and_recluster_never_moves_confirmed_faces(people: Settings) -> None:
    s = people
    a = annotate(s, "m1", [face_vec("ann")])[0]
    b = annotate(s, "m2", [face_vec("bob")])[0]
    pa, pb = person_of(s, a), person_of(s, b)
    assert pa and pb and pa != pb
    merged = curation.merge(s, pa, [pb])
    assert person_of(s, b) == pa
    curation.recluster_now(s)  # the merged person is confirmed: re-clustering leaves it alone
    assert person_of(s, b) == pa
    curation.undo(s, merged)
    assert person_of(s, b) == pb and person_of(s, a) == pa
    # split: the face goes to a new person and stays there
    c = annotate(s, "m3", [face_vec("ann")])[0]
    assert person_of(s, c) == pa
    new_id, _ = curation.split(s, pa, [c])
    curation.recluster_now(s)
    assert person_of(s, c) == new_id
    # remove: remembered, never assigned back automatically (not even by re-clustering)
    removed_audit = curation.remove_face(s, pa, a)
    curation.recluster_now(s)
    assert person_of(s, a) is None
    curation.undo(s, removed_audit)
    assert person_of(s, a) == pa
    log = queries.audit_log(s)
    assert [e["action"] for e in log][:4] == ["undo", "remove_face", "split", "undo"]
    with pytest.raises(curation.Conflict):
        curation.undo(s, removed_audit)


def test_recluster_joins_loose_faces_and_is_deterministic(people: Settings) -> None:
    s = people
    s.people.match_distance = 0.0001  # nothing matches incrementally: every face starts its own person
    faces = [annotate(s, f"r{i}", [face_vec(who)])[0] for i, who in enumerate(["ann", "bob", "ann", "cy", "bob"])]
    assert len({person_of(s, f) for f in faces}) == 5
    curation.recluster_now(s)
    after = [person_of(s, f) for f in faces]
    assert after[0] == after[2] and after[1] == after[4] and len(set(after)) == 3
    curation.recluster_now(s)
    assert [person_of(s, f) for f in faces] == after  # a second pass changes nothing


def test_forget_person_deletes_descriptors_and_a_replay_does_not_bring_them_back(people: Settings) -> None:
    s = people
    f = annotate(s, "g1", [face_vec("cy")])[0]
    pid = person_of(s, f)
    assert pid
    curation.name_person(s, pid, "Cy")
    curation.forget_person(s, pid)
    with db.connect(s) as conn:
        assert db.scalar(conn, "SELECT count(*) FROM people_faces") == 0
        assert db.scalar(conn, "SELECT count(*) FROM people_persons") == 0
        assert db.scalar(conn, "SELECT count(*) FROM people_audit WHERE detail::text LIKE '%%Cy%%'") == 0
    annotate(s, "g1", [face_vec("cy")])  # the same annotation again (a replay)
    with db.connect(s) as conn:
        assert db.scalar(conn, "SELECT count(*) FROM people_faces") == 0


def test_recognition_off_for_a_collection(people: Settings) -> None:
    s = people
    kept = annotate(s, "c1", [face_vec("ann")], collection="press")[0]
    curation.set_collection_recognition(s, "private", False)
    off = annotate(s, "c2", [face_vec("ann")], collection="private")[0]
    assert person_of(s, kept) is not None and person_of(s, off) is None
    cleared = curation.set_collection_recognition(s, "press", False)
    assert cleared == 1 and person_of(s, kept) is None
    s.people.enabled = False
    assert person_of(s, annotate(s, "c3", [face_vec("bob")])[0]) is None


# ------------------------------------------------------------------------------ the pipeline, kill -9, replay
def _jpeg(name: str, crop: int = 0) -> bytes:
    img = Image.open(FACES / name).convert("RGB")
    if crop:
        img = img.crop((crop, crop, img.width - crop, img.height - crop))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _records(s: Settings, topic: str, idle_s: float = 3.0) -> int:
    c = kafka.consumer(s, f"counter-{uuid.uuid4().hex[:8]}")
    c.subscribe([topic])
    n, last = 0, time.monotonic()
    while time.monotonic() - last < idle_s:
        for m in c.consume(num_messages=500, timeout=0.5):
            if m.error() is None:
                n += 1
                last = time.monotonic()
    c.close()
    return n


def _wait_people(s: Settings, timeout: float = 120) -> None:
    """Until the people sink's stored offset reaches the end of the face topic."""
    topic = s.topic(kafka.annotations_topic("face_embed"))
    want = _records(s, topic)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.connect(s) as conn:
            got = db.scalar(conn, "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE sink='people' AND "
                                  "topic=%s", (topic,))
        if got == want:
            return
        time.sleep(0.3)
    raise AssertionError(f"people sink at {got} of {want} records")


def _person_of_asset(s: Settings, asset_id: str) -> str | None:
    with db.connect(s) as conn:
        row = conn.execute("SELECT person_id FROM people_faces WHERE asset_id=%s AND person_id IS NOT NULL "
                           "ORDER BY size_px DESC LIMIT 1", (asset_id,)).fetchone()
    return None if row is None else row["person_id"]


@pytest.mark.integration
def test_pipeline_people_through_kill_9_and_replay(stack_settings: Settings) -> None:
    load_models(stack_settings, ["face_embed"])
    s = isolated_settings(stack_settings, "t_people_pipeline")
    s.models = ["face_embed"]
    kafka.ensure_topics(s, kafka.all_topics(s, s.models))
    sup = Supervisor(s, default_workers(s))
    assert "sink-people" in sup.workers
    sup.start()
    try:
        ing = Ingestor(s)

        def upload(name: str, crop: int = 0) -> str:
            aid = ing.ingest_bytes(_jpeg(name, crop), Metadata(filename=name)).asset_id
            final = pipeline.wait_until_done(s, [aid], "face_embed", timeout=180)
            assert final.done and final.failed == 0, (final, sup.dead())
            return aid

        # the same person uploaded at different times lands in one person; a different person does not
        obama1 = upload("obama.jpg")
        _wait_people(s)
        biden = upload("biden.jpg")
        obama2 = upload("obama2.jpg")
        _wait_people(s)
        p_obama, p_biden = _person_of_asset(s, obama1), _person_of_asset(s, biden)
        assert p_obama and p_biden and p_obama != p_biden
        assert _person_of_asset(s, obama2) == p_obama
        # naming propagates to search
        curation.name_person(s, p_obama, "Barack Obama")
        idx = get_search_index(s)
        assert sorted(h.asset_id for h in idx.search(SearchQuery(persons=("barack obama",))).hits) == \
            sorted([obama1, obama2])

        # kill -9 the people sink; uploads and curation go on while it is down
        sup.kill("sink-people")
        obama3 = ing.ingest_bytes(_jpeg("obama3.jpg"), Metadata(filename="obama3.jpg")).asset_id
        merge_audit = curation.merge(s, p_obama, [p_biden])  # a wrong merge ...
        curation.undo(s, merge_audit)  # ... undone
        new_person, _ = curation.split(s, p_obama, [f["face_id"] for f in queries.asset_faces(s, obama2)
                                                    if f["person_id"] == p_obama])
        sup.start()  # restart what died
        assert pipeline.wait_until_done(s, [obama3], "face_embed", timeout=180).done
        _wait_people(s)
        assert _person_of_asset(s, obama3) == p_obama  # joined the named person after the restart
        assert _person_of_asset(s, biden) == p_biden and _person_of_asset(s, obama2) == new_person

        # forget biden, then kill -9 again and replay the whole face topic from the beginning
        refs = [f for f in queries.asset_faces(s, biden)]
        with db.connect(s) as conn:
            biden_refs = [r["descriptor_ref"] for r in conn.execute(
                "SELECT descriptor_ref FROM people_faces WHERE person_id=%s", (p_biden,)).fetchall()]
        assert refs and biden_refs
        curation.forget_person(s, p_biden)
        with pytest.raises(ObjectMissing):
            ObjectStore(s).get(descriptor_key(biden_refs[0]))
        with db.connect(s) as conn:
            before = conn.execute(
                "SELECT face_id, person_id, assigned_by FROM people_faces ORDER BY face_id").fetchall()
        sup.kill("sink-people")
        with db.transaction(s) as conn:
            conn.execute("DELETE FROM sink_offsets WHERE sink='people'")  # replay everything
        sup.start()
        _wait_people(s)
        with db.connect(s) as conn:
            after = conn.execute("SELECT face_id, person_id, assigned_by FROM people_faces ORDER BY face_id").fetchall()
            forgotten = db.scalar(conn, "SELECT count(*) FROM people_faces WHERE asset_id=%s", (biden,))
        assert after == before  # the replay changed nothing: no duplicates, same persons, biden stays forgotten
        assert forgotten == 0
        print(f"\npeople through kill -9 + replay: {len(after)} faces, persons "
              f"{sorted({r['person_id'] for r in after if r['person_id']})}")
    finally:
        sup.stop()
