"""Camera and wire drops on the embedded stack: a recursive drop folder (XMP sidecar, ninjs document, a collection
per sub-folder) and ``argus run ftp`` as its own process (settings ``ftp``), with Python's ftplib."""

from __future__ import annotations

import ftplib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from core import db
from core.settings import SETTINGS_ENV, FtpAccountSettings, Settings
from core.storage import ObjectStore
from models.media_metadata import extract, sidecar_key
from producers.ftp_server import password_hash
from producers.ingest import Ingestor
from producers.watch_folder import DONE_DIR, WatchFolder
from tests.test_agency import NEWSML, NINJS_3
from tests.test_model_media_metadata import WIRE, tagged

pytestmark = pytest.mark.integration

SIDECAR = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
           b'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">Desk caption</rdf:li></rdf:Alt></dc:description>'
           b'</rdf:Description></rdf:RDF></x:xmpmeta>')


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_nested_drop_folder_with_sidecar_and_ninjs_ingests_each_once(env: Settings, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "sports" / "match").mkdir(parents=True)
    (drop / "wire").mkdir()
    photo = tagged(jpeg((200, 30, 30)), **WIRE)  # type: ignore[arg-type]
    (drop / "sports" / "match" / "DSC_0001.jpg").write_bytes(photo)
    (drop / "sports" / "match" / "DSC_0001.xmp").write_bytes(SIDECAR)
    wire = jpeg((30, 160, 60))
    (drop / "wire" / "photo.jpg").write_bytes(wire)
    (drop / "wire" / "small.jpg").write_bytes(jpeg((30, 160, 60), (32, 24)))
    (drop / "wire" / "item.json").write_text(json.dumps(NINJS_3))
    w = WatchFolder(Ingestor(env), drop, settle_s=0.5, collections={"wire": "agency-dpa"})

    assert w.scan_once(now=0.0) == []
    handled = dict(w.scan_once(now=1.0))
    assert sorted(handled) == ["sports/match/DSC_0001.jpg", "wire/item.json"], handled
    assert all(o.startswith("ingested") for o in handled.values()), handled
    for now in (2.0, 3.0, 4.0):  # nothing is taken twice, the sidecar and the renditions are never taken alone
        assert w.scan_once(now=now) == []

    cam_id = handled["sports/match/DSC_0001.jpg"].split()[1]
    m = extract(photo, "image", ObjectStore(env).get(sidecar_key(cam_id)))
    assert m.caption == "Desk caption" and m.credit == "Reuters"  # the sidecar wins, the rest from the file
    wire_id = handled["wire/item.json"].split()[1]
    m2 = extract(wire, "image", ObjectStore(env).get(sidecar_key(wire_id)))
    assert m2.headline == "Elbe bridge opens"
    with db.connect(env) as conn:
        rows = {r["asset_id"]: r for r in conn.execute("SELECT asset_id, source, collection FROM assets").fetchall()}
        assert db.scalar(conn, "SELECT count(*) FROM outbox WHERE topic=%s", (env.topic("media.uploaded"),)) == 2
    assert len(rows) == 2
    assert (rows[cam_id]["collection"], rows[cam_id]["source"]) == ("sports", "watch:drop")
    assert (rows[wire_id]["collection"], rows[wire_id]["source"]) == ("agency-dpa", "watch:drop:ninjs")
    done = drop / DONE_DIR
    for rel in ("sports/match/DSC_0001.jpg", "sports/match/DSC_0001.xmp", "wire/item.json", "wire/photo.jpg",
                "wire/small.jpg"):
        assert (done / rel).is_file(), rel
    assert [p for p in drop.rglob("*") if p.is_file() and DONE_DIR not in p.parts] == []


def test_agency_folder_stages_media_until_its_document(env: Settings, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "reuters").mkdir(parents=True)
    photo = jpeg((30, 160, 60))
    (drop / "reuters" / "photo.jpg").write_bytes(photo)
    (drop / "reuters" / "thumb.jpg").write_bytes(jpeg((30, 160, 60), (32, 24)))
    w = WatchFolder(Ingestor(env), drop, settle_s=0.5, agency=frozenset({"reuters"}))
    assert w.scan_once(now=0.0) == [] and w.scan_once(now=1.0) == []  # settled, but staged for the document
    (drop / "reuters" / "item.xml").write_bytes(NEWSML)
    assert w.scan_once(now=2.0) == []
    handled = dict(w.scan_once(now=3.0))
    assert list(handled) == ["reuters/item.xml"] and handled["reuters/item.xml"].startswith("ingested"), handled
    assert w.scan_once(now=4.0) == []
    with db.connect(env) as conn:
        row = conn.execute("SELECT source, collection FROM assets").fetchone()
        assert db.scalar(conn, "SELECT count(*) FROM assets") == 1
    assert row is not None and (row["source"], row["collection"]) == ("watch:drop:newsml", "reuters")
    assert sorted(p.name for p in (drop / "reuters").iterdir()) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_argus_run_ftp_accepts_a_login_and_ingests(env: Settings, tmp_path: Path) -> None:
    s = env.model_copy(deep=True)
    s.ftp.port = free_port()
    s.ftp.root = tmp_path / "ftp"
    s.ftp.accounts = [FtpAccountSettings(user="nikon", password_sha256=password_hash("s3cret"), collection="sports")]
    log = open(tmp_path / "ftp.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "argus.cli", "run", "ftp"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, SETTINGS_ENV: s.model_dump_json()}, cwd=Path(__file__).parent.parent)
    try:
        ftp = ftplib.FTP()
        deadline = time.monotonic() + 60
        while True:
            try:
                ftp.connect("127.0.0.1", s.ftp.port, timeout=10)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "ftp.log").read_text()
                time.sleep(0.2)
        with pytest.raises(ftplib.error_perm):
            ftp.login("nikon", "wrong")
        ftp.connect("127.0.0.1", s.ftp.port, timeout=10)
        ftp.login("nikon", "s3cret")
        ftp.storbinary("STOR DSC_0002.jpg", io.BytesIO(jpeg((10, 10, 200))))
        ftp.quit()
        deadline = time.monotonic() + 30
        row = None
        while row is None and time.monotonic() < deadline:
            with db.connect(env) as conn:
                row = conn.execute("SELECT source, collection, filename FROM assets").fetchone()
            time.sleep(0.2)
        assert row is not None, (tmp_path / "ftp.log").read_text()
        assert (row["source"], row["collection"], row["filename"]) == ("ftp:nikon", "sports", "DSC_0002.jpg")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
