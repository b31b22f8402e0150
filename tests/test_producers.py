"""Producers against the real object store and PostgreSQL: watch folder, bulk import, limits,
and the transactional outbox (asset row + event in one transaction)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from core import db
from core.settings import Settings
from producers.bulk_import import bulk_import
from producers.ingest import EmptyUpload, Ingestor, Metadata, TooLarge, UnsupportedMedia
from producers.watch_folder import DONE_DIR, REJECTED_DIR, WatchFolder

pytestmark = pytest.mark.integration


def jpeg(color: str, size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "JPEG")
    return buf.getvalue()


def test_watch_folder_waits_for_complete_files_and_never_follows_links(env: Settings, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    secret = tmp_path / "outside.jpg"
    secret.write_bytes(jpeg("blue"))
    (drop / "link.jpg").symlink_to(secret)  # a link out of the folder: never read
    (drop / "growing.jpg").write_bytes(jpeg("red")[:100])  # still being written
    (drop / "upload.jpg.part").write_bytes(jpeg("green"))  # partial-download suffix
    (drop / "notes.txt").write_bytes(b"hello, not media")
    w = WatchFolder(Ingestor(env), drop, settle_s=0.5)

    assert w.scan_once(now=0.0) == []  # first sight: nothing is complete yet
    (drop / "growing.jpg").write_bytes(jpeg("red"))  # the writer finishes
    handled = dict(w.scan_once(now=1.0))  # notes.txt is settled; growing.jpg just changed
    assert "growing.jpg" not in handled
    handled.update(w.scan_once(now=2.0))  # now growing.jpg has been stable for settle_s
    assert handled["growing.jpg"].startswith("ingested")
    assert handled["notes.txt"].startswith("rejected: unsupported media")
    assert "link.jpg" not in handled and "upload.jpg.part" not in handled
    assert (drop / DONE_DIR / "growing.jpg").exists()
    assert (drop / REJECTED_DIR / "notes.txt").exists()
    assert "unsupported media" in (drop / REJECTED_DIR / "notes.txt.reason.txt").read_text()
    assert secret.exists() and (drop / "link.jpg").is_symlink()
    with db.connect(env) as conn:
        assert db.scalar(conn, "SELECT count(*) FROM assets") == 1
        assert db.scalar(conn, "SELECT count(*) FROM outbox") == 1


def test_ingest_limits_and_idempotence(env: Settings, tmp_path: Path) -> None:
    ing = Ingestor(env)
    with pytest.raises(EmptyUpload):
        ing.ingest_bytes(b"", Metadata())
    with pytest.raises(UnsupportedMedia):
        ing.ingest_bytes(b"#!/bin/sh\nrm -rf /\n", Metadata(filename="evil.jpg"))  # extension lies
    small = env.model_copy(deep=True)
    small.limits.max_upload_bytes = 1000
    with pytest.raises(TooLarge):
        Ingestor(small).ingest_bytes(jpeg("red", 512), Metadata())
    a = ing.ingest_bytes(jpeg("red"), Metadata(filename="../../etc/a.jpg"))
    b = ing.ingest_bytes(jpeg("red"), Metadata(filename="b.jpg"))
    assert a.created and not b.created and a.asset_id == b.asset_id
    with db.connect(env) as conn:
        row = conn.execute("SELECT filename, object_key FROM assets WHERE asset_id=%s", (a.asset_id,)).fetchone()
        assert row is not None and row["filename"] == "a.jpg"
        assert db.scalar(conn, "SELECT count(*) FROM outbox WHERE key=%s", (a.asset_id,)) == 1
    assert ing.store.get(row["object_key"]) == jpeg("red")


def test_bulk_import_reports_each_file(env: Settings, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "one.jpg").write_bytes(jpeg("white"))
    (tmp_path / "sub" / "two.png").write_bytes(jpeg("black"))  # wrong extension, real JPEG: accepted
    (tmp_path / "sub" / "bad.jpg").write_bytes(b"\x00" * 10)
    (tmp_path / ".hidden.jpg").write_bytes(jpeg("gray"))
    os.symlink(tmp_path / "one.jpg", tmp_path / "sub" / "link.jpg")
    report = bulk_import(Ingestor(env), [tmp_path], show_progress=False)
    assert sorted(p.name for p, _ in report.created) == ["one.jpg", "two.png"]
    assert [p.name for p, _ in report.rejected] == ["bad.jpg"]
    assert "unsupported media" in report.rejected[0][1]
