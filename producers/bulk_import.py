"""CLI bulk import of files and folders, with a progress bar and a per-file outcome."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from producers.ingest import IngestError, Ingestor, Metadata


@dataclass
class ImportReport:
    created: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[tuple[Path, str]] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Regular files under the given paths, sorted; symlinks and hidden files are skipped."""
    for p in paths:
        if p.is_symlink():
            continue
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if child.is_file() and not child.is_symlink() and not any(
                    part.startswith(".") for part in child.relative_to(p).parts
                ):
                    yield child
        elif p.is_file():
            yield p


def bulk_import(ingestor: Ingestor, paths: Iterable[Path], source: str = "bulk",
                collection: str | None = None, show_progress: bool = True) -> ImportReport:
    paths = list(paths)
    files = list(iter_files(paths))
    report = ImportReport()
    for p in paths:  # a path that does not exist is reported, not silently skipped
        if not p.exists() and not p.is_symlink():
            report.rejected.append((p, "no such file or directory"))
    columns = (TextColumn("[bold]import"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[name]}"))
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task("import", total=len(files), name="")
        for f in files:
            progress.update(task, name=f.name[:40])
            try:
                r = ingestor.ingest_path(f, Metadata(filename=f.name, source=source, collection=collection,
                                                     title=f.stem.replace("_", " ")))
            except IngestError as exc:
                report.rejected.append((f, str(exc)))
            except OSError as exc:
                report.rejected.append((f, f"cannot read: {exc.strerror or exc}"))
            else:
                (report.created if r.created else report.duplicates).append((f, r.asset_id))
            progress.advance(task)
    return report
