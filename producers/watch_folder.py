"""Watch-folder producer for camera and wire drops.

A file is ingested only once it is complete: its size and mtime must be unchanged over
``settle_s`` and it must not carry a partial-download suffix. Symlinks are never followed and
nothing outside the folder is read (paths are resolved and checked). Ingested files move to
``.argus-done/``; refused ones to ``.argus-rejected/`` with a ``<name>.reason.txt`` beside them.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from producers.ingest import IngestError, Ingestor, Metadata

log = logging.getLogger(__name__)

PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart", ".!sync")
DONE_DIR = ".argus-done"
REJECTED_DIR = ".argus-rejected"


@dataclass
class WatchFolder:
    ingestor: Ingestor
    folder: Path
    settle_s: float = 2.0
    poll_s: float = 1.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    _seen: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # name -> (size, mtime_ns, since)

    def __post_init__(self) -> None:
        self.folder = self.folder.resolve()
        (self.folder / DONE_DIR).mkdir(exist_ok=True)
        (self.folder / REJECTED_DIR).mkdir(exist_ok=True)

    def candidates(self) -> list[os.DirEntry[str]]:
        out = []
        with os.scandir(self.folder) as it:
            for e in it:
                if e.name.startswith(".") or e.name.lower().endswith(PARTIAL_SUFFIXES):
                    continue
                if e.is_symlink() or not e.is_file(follow_symlinks=False):
                    continue  # never follow a link out of the drop folder
                out.append(e)
        return out

    def scan_once(self, now: float | None = None) -> list[tuple[str, str]]:
        """One pass: returns (filename, outcome) for the files handled in this pass."""
        now = time.monotonic() if now is None else now
        handled = []
        present = set()
        for e in self.candidates():
            present.add(e.name)
            st = e.stat(follow_symlinks=False)
            sig = (st.st_size, st.st_mtime_ns)
            prev = self._seen.get(e.name)
            if prev is None or prev[:2] != sig:
                self._seen[e.name] = (*sig, now)  # new or still growing
                continue
            if now - prev[2] < self.settle_s:
                continue
            handled.append((e.name, self._ingest(e.name)))
            self._seen.pop(e.name, None)
        for gone in set(self._seen) - present:
            self._seen.pop(gone)
        return handled

    def _ingest(self, name: str) -> str:
        path = (self.folder / name).resolve()
        if path.parent != self.folder:  # defence in depth against traversal via odd names
            return "skipped: outside the watch folder"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            return f"skipped: {exc.strerror}"
        try:
            with os.fdopen(fd, "rb") as fh:
                r = self.ingestor.ingest_stream(fh, Metadata(filename=name, source=f"watch:{self.folder.name}",
                                                             title=Path(name).stem.replace("_", " ")))
        except IngestError as exc:
            self._move(path, REJECTED_DIR)
            (self.folder / REJECTED_DIR / f"{name}.reason.txt").write_text(str(exc) + "\n")
            log.warning("watch: rejected %s: %s", name, exc)
            return f"rejected: {exc}"
        self._move(path, DONE_DIR)
        return f"{'ingested' if r.created else 'duplicate'} {r.asset_id}"

    def _move(self, path: Path, sub: str) -> None:
        target = self.folder / sub / path.name
        if target.exists():
            target = target.with_name(f"{path.stem}-{int(time.time() * 1000)}{path.suffix}")
        shutil.move(str(path), str(target))

    def run(self) -> None:
        log.info("watching %s", self.folder)
        while not self.stop_event.is_set():
            for name, outcome in self.scan_once():
                log.info("watch: %s -> %s", name, outcome)
            self.stop_event.wait(self.poll_s)
