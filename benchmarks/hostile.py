"""Hostile-input corpus: every producer (HTTP upload, bulk import, watch folder, raw records on the
topics) gets malformed, oversized, mislabelled, booby-trapped and corrupt input, mixed with valid
assets. Each case must end in a clear error or a dead-letter entry; the valid assets must all come
through exactly once (argus.verify), i.e. nothing else is lost or blocked.

    .venv/bin/python -m benchmarks.hostile --doc docs/hostile-input.md     # private stack, writes the table

tests/test_hostile_input.py runs the same corpus on the test session's stack and asserts every case.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from argus.verify import Verdict, wait_until_consistent
from core import db, kafka
from core.settings import Settings
from producers.bulk_import import bulk_import
from producers.ingest import Ingestor
from producers.watch_folder import DONE_DIR, REJECTED_DIR, WatchFolder
from schemas.events import MediaUploaded, dump

MODEL = "efficientnet_lite0"


@dataclass
class Case:
    cid: str
    producer: str
    what: str
    expected: str
    observed: str = ""
    ok: bool = False
    # filled for cases whose verdict comes later (dead letters written by processors/sinks)
    asset_id: str | None = None
    record: tuple[str, int, int] | None = None  # (topic, partition, offset)
    want_reason: str = ""
    want_stages: tuple[str, ...] = ()


# ---- media makers ---------------------------------------------------------------------------
def jpeg(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    img = Image.effect_noise(size, 40 + seed).convert("RGB")
    img.putpixel((seed % size[0], 0), (seed % 255, 7, 9))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((64, 48), 30 + seed).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def png_bomb(width: int = 10000, height: int = 9000) -> bytes:
    """A ~12 KB PNG that decodes to width*height pixels (1-bit), built without allocating them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_pixel_flood() -> bytes:
    """A tiny JPEG whose header claims 65500 x 65500 pixels."""
    data = bytearray(jpeg(99))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", 65500, 65500)
    return bytes(data)


def media_event(asset_id: str, **over: Any) -> dict[str, Any]:
    ev = MediaUploaded(event_id=f"upl-{asset_id[:40]}", asset_id=asset_id, bucket="argus-media",
                       object_key=f"sha256/{asset_id[:2]}/{asset_id[2:4]}/{asset_id}", media_type="image",
                       content_type="image/jpeg", size_bytes=10, filename="x.jpg")
    obj: dict[str, Any] = json.loads(dump(ev))
    obj.update(over)
    return obj


def annotation_record(asset_id: str, model: str = MODEL, **payload_over: Any) -> dict[str, Any]:
    payload = {"kind": "classification_embedding", "labels": [{"name": "cat", "score": 0.9}],
               "embedding": [0.1, 0.2], "embedding_dim": 2, **payload_over}
    return {"schema": "annotation", "schema_version": 1, "event_id": f"ann-hostile-{asset_id[:8]}-{model}",
            "occurred_at": "2026-11-21T10:00:00Z", "annotation_id": f"hostile{asset_id[:24]}",
            "asset_id": asset_id, "model": model, "model_version": "1", "keyframe_ms": None, "payload": payload}


# ---- the run -----------------------------------------------------------------------------------
@dataclass
class HostileRun:
    settings: Settings
    work: Path
    cases: list[Case] = field(default_factory=list)
    valid_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api_settings = self.settings.model_copy(deep=True)
        self.api_settings.limits.max_upload_bytes = 300_000  # small caps keep the oversize cases cheap
        self.api_settings.security.max_request_bytes = 400_000
        self.api_settings.security.rate_burst = 10_000
        self.client = TestClient(create_app_for(self.api_settings))
        self.ingestor = Ingestor(self.settings)
        self.seed = 0

    def case(self, cid: str, producer: str, what: str, expected: str) -> Case:
        c = Case(cid, producer, what, expected)
        self.cases.append(c)
        return c

    def next_jpeg(self) -> bytes:
        self.seed += 1
        return jpeg(self.seed)

    # -- HTTP upload ----------------------------------------------------------------------------
    def http(self) -> None:
        key = {"X-API-Key": "dev-key"}

        def post(c: Case, files: dict[str, Any], want: int, data: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, detail: str = "", valid: bool = False,
                 check: Callable[[dict[str, Any]], str | None] | None = None) -> None:
            r = self.client.post("/v1/assets", files=files, data=data or {},
                                 headers=key if headers is None else headers)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            text = json.dumps(body.get("detail", ""))[:120]
            c.observed = f"HTTP {r.status_code} {text}" if r.status_code >= 400 else \
                f"HTTP {r.status_code} {body.get('content_type')} asset {str(body.get('asset_id'))[:12]}"
            c.ok = r.status_code == want and detail.lower() in text.lower()
            if c.ok and check is not None:
                problem = check(body)
                if problem:
                    c.ok, c.observed = False, c.observed + f"; {problem}"
                else:
                    c.observed += "; " + (self._filename(body["asset_id"]) or "")
            if r.status_code in (200, 201) and valid:
                self.valid_ids.append(body["asset_id"])
            if r.status_code == 201 and not valid:
                c.asset_id = body["asset_id"]

        post(self.case("http-oversize-declared", "HTTP upload", "500 KB body, Content-Length over the request cap",
                       "413 before the body is read"),
             {"file": ("big.jpg", self.next_jpeg() + b"\0" * 500_000)}, 413, detail="exceeds")
        post(self.case("http-oversize-file", "HTTP upload", "350 KB file under the request cap, over the upload cap",
                       "413 while streaming (ingest cap)"),
             {"file": ("big.jpg", self.next_jpeg() + b"\0" * 350_000)}, 413, detail="limit")
        r = self.client.post("/v1/assets", content=iter([b"x" * 65536] * 8),
                             headers={**key, "Content-Type": "multipart/form-data; boundary=zz"})
        c = self.case("http-oversize-chunked", "HTTP upload", "512 KB chunked body without Content-Length",
                      "413 once the cap is crossed")
        c.observed, c.ok = f"HTTP {r.status_code}", r.status_code == 413
        post(self.case("http-script-as-jpg", "HTTP upload", "shell script named x.jpg, Content-Type image/jpeg",
                       "415 (content sniffed, not the name/type)"),
             {"file": ("x.jpg", b"#!/bin/sh\nrm -rf /\n", "image/jpeg")}, 415, detail="unsupported")
        post(self.case("http-html-as-png", "HTTP upload", "HTML with <script> named x.png", "415"),
             {"file": ("x.png", b"<html><script>alert(1)</script></html>", "image/png")}, 415)
        post(self.case("http-svg", "HTTP upload", "SVG image (XML, can carry script)", "415 (not an allowed type)"),
             {"file": ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "image/svg+xml")},
             415)
        post(self.case("http-pdf", "HTTP upload", "PDF named x.jpg", "415"),
             {"file": ("x.jpg", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "image/jpeg")}, 415)
        post(self.case("http-heic-junk", "HTTP upload", "HEIC header (ftyp heic) over junk bytes",
                       "201 image/heic (HEIC is accepted), then dead-lettered by the decoders"),
             {"file": ("x.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64)}, 201)
        post(self.case("http-empty", "HTTP upload", "0-byte file", "400"), {"file": ("e.jpg", b"")}, 400,
             detail="empty")
        post(self.case("http-no-key", "HTTP upload", "no X-API-Key", "401"), {"file": ("a.jpg", self.next_jpeg())},
             401, headers={})
        post(self.case("http-bad-key", "HTTP upload", "wrong X-API-Key", "401"),
             {"file": ("a.jpg", self.next_jpeg())}, 401, headers={"X-API-Key": "argus_guess_123"})
        post(self.case("http-no-file", "HTTP upload", "multipart without a file field", "422"), {"x": ("", b"")},
             422, data={"title": "t"})
        post(self.case("http-title-5k", "HTTP upload", "title of 5000 characters", "422 (field limit)"),
             {"file": ("a.jpg", self.next_jpeg())}, 422, data={"title": "t" * 5000})

        def name_is(want: str) -> Callable[[dict[str, Any]], str | None]:
            def check(body: dict[str, Any]) -> str | None:
                got = self._filename(body["asset_id"])
                return None if got == want else f"stored name {got!r} != {want!r}"
            return check

        post(self.case("http-traversal", "HTTP upload", "filename ../../../etc/passwd.jpg (valid JPEG)",
                       "201; stored name passwd.jpg (objects are stored by hash anyway)"),
             {"file": ("../../../etc/passwd.jpg", self.next_jpeg())}, 201, valid=True, check=name_is("passwd.jpg"))
        post(self.case("http-traversal-windows", "HTTP upload", r"filename ..\..\windows\evil.jpg",
                       "201; stored name evil.jpg"),
             {"file": ("..\\..\\windows\\evil.jpg", self.next_jpeg())}, 201, valid=True, check=name_is("evil.jpg"))
        post(self.case("http-unicode-rtl", "HTTP upload",
                       "filename with a right-to-left override (photo\\u202egpj.exe)",
                       "201; control/format characters stripped"),
             {"file": ("photo\u202egpj.exe", self.next_jpeg())}, 201, valid=True, check=name_is("photogpj.exe"))
        post(self.case("http-long-name", "HTTP upload", "filename of 1000 characters", "201; name cut to 255"),
             {"file": ("n" * 996 + ".jpg", self.next_jpeg())}, 201, valid=True, check=name_is("n" * 255))
        post(self.case("http-huge-name", "HTTP upload", "filename of 20000 characters",
                       "400 (multipart header limit)"),
             {"file": ("n" * 19996 + ".jpg", self.next_jpeg())}, 400, detail="multipart")
        post(self.case("http-dotfile-name", "HTTP upload", "filename .htaccess (valid JPEG)",
                       "201; leading dots stripped"),
             {"file": (".htaccess", self.next_jpeg())}, 201, valid=True, check=name_is("htaccess"))
        post(self.case("http-type-lie", "HTTP upload", "real PNG sent as notes.txt with Content-Type text/plain",
                       "201 as image/png (sniffed)"),
             {"file": ("notes.txt", png(1), "text/plain")}, 201, valid=True)
        post(self.case("http-polyglot", "HTTP upload", "valid JPEG with a ZIP archive appended",
                       "201; annotated as the image it is"),
             {"file": ("poly.jpg", self.next_jpeg() + b"PK\x03\x04" + b"\0" * 200)}, 201, valid=True)
        for cid, what, data, reason in (
            ("http-png-bomb", "decompression bomb: 12 KB PNG of 10000x9000 pixels", png_bomb(), "too large"),
            ("http-pixel-flood", "JPEG header claiming 65500x65500 pixels", jpeg_pixel_flood(), "too large"),
            ("http-truncated", "JPEG cut after a third", self.next_jpeg()[:400], "truncated"),
            ("http-garbage-after-magic", "JPEG magic number then random bytes", b"\xff\xd8\xff\xe0" + os.urandom(3000),
             ""),
        ):
            c = self.case(cid, "HTTP upload", what, f"201, then dead-lettered by the processor ({reason or 'corrupt'})")
            post(c, {"file": (f"{cid}.jpg", data)}, 201)
            c.want_reason, c.want_stages = reason, (f"processor:{MODEL}",)
            c.ok = False  # decided once the dead letter shows up
        post(self.case("http-mp4-garbage", "HTTP upload", "ftyp box then garbage (claims MP4)",
                       "201 as video/mp4; no image model applies (no annotation, nothing blocked)"),
             {"file": ("clip.mp4", b"\0\0\0\x18ftypisom\0\0\0\0isomiso2" + os.urandom(500))}, 201)

    def _filename(self, asset_id: str) -> str | None:
        with db.connect(self.settings) as conn:
            row = conn.execute("SELECT filename FROM assets WHERE asset_id=%s", (asset_id,)).fetchone()
        return row["filename"] if row else None

    # -- bulk import ------------------------------------------------------------------------------
    def bulk(self) -> None:
        root = self.work / "bulk"
        (root / "sub").mkdir(parents=True)
        outside = self.work / "outside.jpg"
        outside.write_bytes(self.next_jpeg())
        (root / "link.jpg").symlink_to(outside)
        (root / "dangling.jpg").symlink_to(self.work / "nope.jpg")
        os.mkfifo(root / "pipe.jpg")
        (root / ".hidden.jpg").write_bytes(self.next_jpeg())
        (root / "sub" / "real.jpg").write_bytes(png(2))  # PNG under a .jpg name
        (root / "sub" / "text.jpg").write_bytes(b"just text\n")
        (root / "sub" / "ok.jpeg").write_bytes(self.next_jpeg())
        report = bulk_import(self.ingestor, [root, self.work / "missing-dir"], show_progress=False)
        done = {p.name: a for p, a in report.created + report.duplicates}
        rejected = {p.name: r for p, r in report.rejected}
        self.valid_ids += list(done.values())
        seen = set(done) | set(rejected)

        def verdict(cid: str, what: str, expected: str, ok: bool, observed: str) -> None:
            c = self.case(cid, "bulk import", what, expected)
            c.ok, c.observed = ok, observed

        verdict("bulk-symlink", "symlink to a file outside the tree", "skipped, target never read",
                "link.jpg" not in seen, "skipped" if "link.jpg" not in seen else "READ")
        verdict("bulk-dangling-symlink", "dangling symlink", "skipped", "dangling.jpg" not in seen, "skipped")
        verdict("bulk-fifo", "named pipe called pipe.jpg", "skipped (no hang on open)", "pipe.jpg" not in seen,
                "skipped")
        verdict("bulk-hidden", "hidden file .hidden.jpg", "skipped", ".hidden.jpg" not in seen, "skipped")
        verdict("bulk-png-as-jpg", "PNG named real.jpg", "imported (sniffed)", "real.jpg" in done, "imported")
        verdict("bulk-text", "text file named text.jpg", "rejected: unsupported media",
                "unsupported media" in rejected.get("text.jpg", ""), f"rejected: {rejected.get('text.jpg', '')[:60]}")
        verdict("bulk-missing-path", "a path that does not exist", "rejected: no such file",
                "no such file" in rejected.get("missing-dir", ""), f"rejected: {rejected.get('missing-dir', '')}")

    # -- watch folder -----------------------------------------------------------------------------
    def watch(self) -> None:
        drop = self.work / "drop"
        drop.mkdir()
        secret = self.work / "secret.jpg"
        secret.write_bytes(self.next_jpeg())
        (drop / "evil-link.jpg").symlink_to(secret)
        os.mkfifo(drop / "pipe.jpg")
        (drop / "photo.jpg.part").write_bytes(self.next_jpeg())
        growing = self.next_jpeg()
        (drop / "growing.jpg").write_bytes(growing[:200])
        (drop / "notes.jpg").write_bytes(b"plain text, not media\n")
        (drop / "caf\u00e9 \U0001f4f7 \u202e.jpg").write_bytes(self.next_jpeg())
        (drop / "cut.jpg").write_bytes(self.next_jpeg()[:300])
        w = WatchFolder(self.ingestor, drop, settle_s=0.5)
        results: dict[str, str] = dict(w.scan_once(now=0.0))  # first sight: nothing is settled yet
        (drop / "growing.jpg").write_bytes(growing[:1000])  # the writer is still at it
        results.update(w.scan_once(now=1.0))  # the other files settled; growing.jpg changed
        growing_early = "growing.jpg" in results
        (drop / "growing.jpg").write_bytes(growing)  # the writer finishes
        (drop / "photo.jpg.part").rename(drop / "photo.jpg")  # the download completes
        for t in (2.0, 3.0, 4.0):
            results.update(w.scan_once(now=t))

        def verdict(cid: str, what: str, expected: str, ok: bool, observed: str) -> Case:
            c = self.case(cid, "watch folder", what, expected)
            c.ok, c.observed = ok, observed
            return c

        def asset_of(name: str) -> str | None:
            out = results.get(name, "")
            return out.split()[-1] if out.startswith(("ingested", "duplicate")) else None

        verdict("watch-symlink", "symlink to a file outside the folder", "never followed or read",
                "evil-link.jpg" not in results and secret.exists(), "ignored")
        verdict("watch-fifo", "named pipe pipe.jpg", "ignored (no hang)", "pipe.jpg" not in results, "ignored")
        ok = asset_of("photo.jpg") is not None and "photo.jpg.part" not in results
        verdict("watch-partial", "photo.jpg.part, renamed when complete", "ignored while .part, then ingested", ok,
                results.get("photo.jpg", "never ingested")[:40])
        ok = not growing_early and asset_of("growing.jpg") == hashlib.sha256(growing).hexdigest()
        verdict("watch-growing", "file still being written", "waits until size/mtime settle, then ingested whole",
                ok, results.get("growing.jpg", "never")[:40] + (" (complete)" if ok else ""))
        verdict("watch-text", "text file notes.jpg", "moved to .argus-rejected/ with a reason file",
                (drop / REJECTED_DIR / "notes.jpg.reason.txt").exists(), results.get("notes.jpg", "")[:60])
        name = "caf\u00e9 \U0001f4f7 \u202e.jpg"
        aid = asset_of(name)
        verdict("watch-unicode", "name with accents, emoji and an RTL override", "ingested, name cleaned",
                aid is not None and (drop / DONE_DIR / name).exists(), f"stored as {self._filename(aid or '')!r}")
        c = verdict("watch-truncated", "truncated JPEG dropped in", "ingested, then dead-lettered (truncated)", False,
                    results.get("cut.jpg", "")[:40])
        c.asset_id, c.want_reason, c.want_stages = asset_of("cut.jpg"), "truncated", (f"processor:{MODEL}",)
        self.valid_ids += [a for a in (asset_of("photo.jpg"), asset_of("growing.jpg"), aid) if a]

    # -- raw records on the topics ------------------------------------------------------------------
    def topics(self) -> None:
        s = self.settings
        up = s.topic(kafka.TOPIC_UPLOADED)
        ann = s.topic(kafka.annotations_topic(MODEL))
        dlq = s.topic(kafka.TOPIC_DLQ)
        producer = kafka.producer(s)
        proc, psink, ssink = f"processor:{MODEL}", "sink:postgres", "sink:search"
        a_valid = self.valid_ids[0]  # an existing asset: only the record itself is wrong
        unknown = "f" * 64
        records: list[tuple[str, str, str, bytes | None, str, tuple[str, ...]]] = [
            ("topic-not-json", up, "bytes that are not JSON on media.uploaded", b"\x00\xffnot json",
             "not JSON", (proc, ssink)),
            ("topic-json-array", up, "a JSON array on media.uploaded", b"[1, 2, 3]", "JSON object", (proc, ssink)),
            ("topic-wrong-schema", up, "an annotation event on media.uploaded",
             json.dumps(annotation_record(a_valid)).encode(), "expected schema", (proc, ssink)),
            ("topic-schema-v2", up, "media.uploaded with schema_version 2",
             json.dumps(media_event(a_valid, schema_version=2)).encode(), "schema_version", (proc, ssink)),
            ("topic-missing-field", up, "media.uploaded without object_key",
             json.dumps({k: v for k, v in media_event(a_valid).items() if k != "object_key"}).encode(),
             "object_key", (proc, ssink)),
            ("topic-extra-field", up, "media.uploaded with an unknown field",
             json.dumps(media_event(a_valid, shell="rm -rf /")).encode(), "extra", (proc, ssink)),
            ("topic-empty", up, "empty value (tombstone)", None, "empty", (proc, ssink)),
            ("topic-huge", up, "2 MB record (a 2 MB filename)",
             json.dumps(media_event(a_valid, filename="x" * 2_000_000)).encode(), "filename", (proc, ssink)),
            ("topic-unknown-asset", up, "well-formed upload event for an asset that does not exist",
             json.dumps(media_event(unknown)).encode(), "", (proc, ssink)),
            ("topic-ann-bad-payload", ann, "annotation whose embedding is a string",
             json.dumps(annotation_record(a_valid, embedding="oops")).encode(), "embedding", (psink, ssink)),
            ("topic-ann-score", ann, "annotation with a label score of 7",
             json.dumps(annotation_record(a_valid, labels=[{"name": "x", "score": 7}])).encode(), "score",
             (psink, ssink)),
            ("topic-ann-unknown-asset", ann, "annotation for an asset that does not exist",
             json.dumps(annotation_record(unknown)).encode(), "", (psink, ssink)),
            ("topic-ann-wrong-model", ann, "annotation claiming another model on this model's topic",
             json.dumps(annotation_record(a_valid, model="evil_model")).encode(), "evil_model", (psink, ssink)),
            ("topic-dlq-garbage", dlq, "garbage on media.dlq", b"{\"schema\": \"dead_letter\"}", "dead_letter",
             (psink,)),
        ]
        delivered: dict[str, tuple[str, int, int]] = {}

        def on_delivery(cid: str) -> Callable[[Any, Any], None]:
            def cb(err: Any, msg: Any) -> None:
                if err is None:
                    delivered[cid] = (msg.topic(), msg.partition(), msg.offset())
            return cb

        for cid, topic, what, value, reason, stages in records:
            c = self.case(cid, f"topic {topic.split('.', 1)[-1] if s.kafka.topic_prefix else topic}", what,
                          f"dead-lettered by {', '.join(stages)}")
            c.want_reason, c.want_stages = reason, stages
            producer.produce(topic, key=b"hostile", value=value, on_delivery=on_delivery(cid))
        producer.flush(30)
        for c in self.cases:
            if c.cid in delivered:
                c.record = delivered[c.cid]

    # -- outcomes decided downstream ----------------------------------------------------------------
    def settle(self, timeout: float) -> None:
        pending = [c for c in self.cases if c.want_stages]
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            with db.connect(self.settings) as conn:
                for c in list(pending):
                    if c.record is not None:
                        rows = conn.execute(
                            "SELECT stage, reason FROM dead_letters WHERE source_topic=%s AND source_partition=%s "
                            "AND source_offset=%s", c.record).fetchall()
                    elif c.asset_id is not None:
                        rows = conn.execute("SELECT stage, reason FROM dead_letters WHERE asset_id=%s",
                                            (c.asset_id,)).fetchall()
                    else:
                        rows = []
                    stages = {r["stage"] for r in rows}
                    if set(c.want_stages) <= stages:
                        reasons = [r["reason"] for r in rows]
                        c.ok = all(c.want_reason.lower() in r.lower() for r in reasons)
                        c.observed = "; ".join(f"{r['stage']}: {r['reason'][:70]}" for r in rows)
                        pending.remove(c)
            time.sleep(0.5)
        for c in pending:
            c.observed = c.observed or "no dead letter"

    def run(self, timeout: float = 300.0) -> tuple[list[Case], Verdict]:
        self.http()
        self.bulk()
        self.watch()
        self.topics()
        # more valid uploads after the hostile records: they must not be blocked behind them
        for i in range(4):
            r = self.client.post("/v1/assets", files={"file": (f"after-{i}.jpg", self.next_jpeg())},
                                 headers={"X-API-Key": "dev-key"})
            self.valid_ids.append(r.json()["asset_id"])
        self.settle(timeout)
        verdict, _ = wait_until_consistent(self.settings, self.valid_ids, timeout)
        return self.cases, verdict


def create_app_for(settings: Settings) -> Any:
    from api.app import create_app

    return create_app(settings)


def render_markdown(cases: list[Case], verdict: Verdict, command: str) -> str:
    lines = [
        "# Hostile input: cases and outcomes", "",
        f"Generated by `{command}` (the same corpus runs in `tests/test_hostile_input.py`).",
        "Every producer gets each kind of bad input; the valid assets mixed in with them must come through",
        "exactly once (argus/verify.py), so nothing else is lost or blocked.", "",
        "| # | producer | input | expected | observed | pass |", "|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(cases, 1):
        obs = c.observed.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {i} | {c.producer} | {c.what.replace('|', '/')} | {c.expected} | {obs} | "
                     f"{'yes' if c.ok else '**NO**'} |")
    lines += ["", f"Valid assets mixed in: {verdict.assets_expected}; verifier: "
              f"{'all annotated and indexed exactly once, none dead-lettered' if verdict.ok else verdict.problems}; "
              f"dead letters in total: {verdict.dead_letters_total}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc", type=Path, default=None)
    args = ap.parse_args()
    from argus.stack.manager import EmbeddedStack
    from argus.stack.ports import settings_for_tests
    from argus.workers import Supervisor, default_workers
    from models.store import pull_all

    with tempfile.TemporaryDirectory(prefix="argus-hostile-") as tmp:
        s = settings_for_tests(Path(tmp) / "state")
        s.kafka.session_timeout_ms = 3000
        pull_all(s)
        stack = EmbeddedStack(s)
        stack.up()
        sup = Supervisor(s, default_workers(s))
        try:
            db.migrate(s)
            kafka.ensure_topics(s, kafka.all_topics(s, s.models))
            sup.start()
            work = Path(tmp) / "work"
            work.mkdir()
            cases, verdict = HostileRun(s, work).run()
        finally:
            sup.stop()
            stack.down()
    text = render_markdown(cases, verdict, "python -m benchmarks.hostile --doc docs/hostile-input.md")
    print(text)
    if args.doc:
        args.doc.write_text(text)
    raise SystemExit(0 if verdict.ok and all(c.ok for c in cases) else 1)


if __name__ == "__main__":
    main()
