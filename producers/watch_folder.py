"""Watch-folder producer for camera and wire drops.

A file is ingested only once it is complete: its size and mtime (and those of its ``.xmp`` sidecar) must be
unchanged over ``settle_s`` and it must not carry a partial-download suffix. The folder is watched recursively;
symlinks (files or folders) are never followed and nothing outside the folder is read (paths are resolved and
checked). Ingested files move to ``.argus-done/<relative path>``; refused ones to ``.argus-rejected/`` with a
``<name>.reason.txt`` beside them, so a file is never taken twice.

- ``photo.xmp`` beside ``photo.jpg`` is its sidecar (its values win over the file's own metadata), as over FTP;
  a sidecar is never ingested alone and moves with its picture;
- a ninjs (``.json``) or NewsML-G2 (``.xml``) document ingests its best rendition from its own folder
  (producers/agency.py); documents are handled before media in each pass, so a document dropped with its
  pictures ingests them once, with its record, and the renditions it names move with it. In an ``agency``
  folder media waits for its document (as an FTP agency account stages it);
- collection: the first-level sub-folder's name (``drop/sports/a.jpg`` -> ``sports``), or ``collections[name]``
  when mapped; files directly in the folder have none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from producers.agency import AgencyError, ingest_document, resolve
from producers.ingest import IngestError, Ingestor, Metadata

log = logging.getLogger(__name__)

PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart", ".!sync")
DONE_DIR = ".argus-done"
REJECTED_DIR = ".argus-rejected"
SIDECAR = ".xmp"
DOCUMENTS = (".json", ".xml")

Sig = tuple[int, int, int, int]  # size, mtime_ns of the file; of its sidecar (-1 when none)


@dataclass
class WatchFolder:
    ingestor: Ingestor
    folder: Path
    settle_s: float = 2.0
    poll_s: float = 1.0
    collections: dict[str, str] = field(default_factory=dict)  # first-level sub-folder -> collection
    agency: frozenset[str] = frozenset()  # first-level sub-folders whose media waits for its agency document
    stop_event: threading.Event = field(default_factory=threading.Event)
    _seen: dict[str, tuple[Sig, float]] = field(default_factory=dict)  # relative path -> (signature, since)

    def __post_init__(self) -> None:
        self.folder = self.folder.resolve()
        (self.folder / DONE_DIR).mkdir(exist_ok=True)
        (self.folder / REJECTED_DIR).mkdir(exist_ok=True)

    def _walk(self, folder: Path, rel: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        with os.scandir(folder) as it:
            entries = list(it)
        for e in entries:
            if e.name.startswith(".") or e.is_symlink():
                continue  # dot files, .argus-done/-rejected, and never a link out of the drop folder
            if e.is_dir(follow_symlinks=False):
                yield from self._walk(folder / e.name, f"{rel}{e.name}/")
            elif e.is_file(follow_symlinks=False) and not e.name.lower().endswith(PARTIAL_SUFFIXES):
                yield f"{rel}{e.name}", e

    def candidates(self) -> list[tuple[str, os.DirEntry[str]]]:
        """(relative path, entry) of every regular file under the folder, documents first."""
        return sorted(self._walk(self.folder, ""), key=lambda c: not c[0].lower().endswith(DOCUMENTS))

    def scan_once(self, now: float | None = None) -> list[tuple[str, str]]:
        """One pass: returns (relative path, outcome) for the files handled in this pass."""
        now = time.monotonic() if now is None else now
        handled = []
        present = set()
        for rel, e in self.candidates():
            low = rel.lower()
            present.add(rel)
            if low.endswith(SIDECAR):
                continue  # taken with its picture
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # a rendition a document of this pass took
            side = (self.folder / rel).with_suffix(SIDECAR)
            sst = side.lstat() if not low.endswith(DOCUMENTS) and side.is_file() and not side.is_symlink() else None
            sig = (st.st_size, st.st_mtime_ns, sst.st_size if sst else -1, sst.st_mtime_ns if sst else -1)
            prev = self._seen.get(rel)
            if prev is None or prev[0] != sig:
                self._seen[rel] = (sig, now)  # new or still growing
                continue
            if now - prev[1] < self.settle_s:
                continue
            top = rel.split("/", 1)[0] if "/" in rel else None
            if top in self.agency and not low.endswith(DOCUMENTS):
                continue  # staged until its document arrives
            handled.append((rel, self._ingest(rel, top)))
            self._seen.pop(rel, None)
        for gone in set(self._seen) - present:
            self._seen.pop(gone)
        return handled

    def _ingest(self, rel: str, top: str | None) -> str:
        path = (self.folder / rel).resolve()
        if not path.is_relative_to(self.folder) or path.relative_to(self.folder).as_posix() != rel:
            return "skipped: outside the watch folder"  # defence in depth against traversal via odd names
        collection = (self.collections.get(top, top) or None) if top else None
        source = f"watch:{self.folder.name}"
        try:
            if path.suffix.lower() in DOCUMENTS:
                return self._document(path, source, collection)
            side = path.with_suffix(SIDECAR)
            sidecar = None
            if side.is_file() and not side.is_symlink():
                sidecar = side.read_bytes()
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                return f"skipped: {exc.strerror}"
            with os.fdopen(fd, "rb") as fh:
                r = self.ingestor.ingest_stream(fh, Metadata(filename=path.name, source=source, collection=collection,
                                                             title=path.stem.replace("_", " ")), sidecar)
        except IngestError as exc:  # AgencyError included
            self._move(path, REJECTED_DIR)
            reason = self.folder / REJECTED_DIR / f"{rel}.reason.txt"
            reason.parent.mkdir(parents=True, exist_ok=True)
            reason.write_text(str(exc) + "\n")
            log.warning("watch: rejected %s: %s", rel, exc)
            return f"rejected: {exc}"
        self._move(path, DONE_DIR)
        if sidecar is not None:
            self._move(side, DONE_DIR)
        return f"{'ingested' if r.created else 'duplicate'} {r.asset_id}"

    def _document(self, path: Path, source: str, collection: str | None) -> str:
        ar = ingest_document(self.ingestor, path, source=source, collection=collection)
        for rend in ar.item.renditions:  # the renditions it named (inside its folder only) go with it
            with contextlib.suppress(AgencyError):
                self._move(resolve(path.parent, rend.href), DONE_DIR)
        self._move(path, DONE_DIR)
        return f"{ar.outcome} {ar.ingest.asset_id}" if ar.ingest else ar.outcome

    def _move(self, path: Path, sub: str) -> None:
        target = self.folder / sub / path.relative_to(self.folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{path.stem}-{int(time.time() * 1000)}{path.suffix}")
        shutil.move(str(path), str(target))

    def run(self) -> None:
        log.info("watching %s", self.folder)
        while not self.stop_event.is_set():
            for name, outcome in self.scan_once():
                log.info("watch: %s -> %s", name, outcome)
            self.stop_event.wait(self.poll_s)
