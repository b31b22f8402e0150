"""How annotations merge into one search document; the same pure code for every backend.

A document keeps every annotation it has seen as ``versions[model][version][keyframe]`` (the
search fields only, never the vectors), and derives what queries use from it:

- per model, the ACTIVE version when the document has it, else its newest version (so a new upload
  stays findable by labels while a backfill of a new version is running);
- within that version, the union of all keyframes' labels, their text, the max of each numeric
  field (a video is flagged if any scene is), newest keyframe deciding ``produced_at``.

Per (model, version, keyframe) the newest annotation wins (``is_newer``): replays and out-of-order
delivery converge to the same document, whatever order the events arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.events import Annotation, SearchFields
from sinks.search.interface import is_newer

Versions = dict[str, dict[str, dict[str, dict[str, Any]]]]  # model -> version -> keyframe key -> entry


def keyframe_key(keyframe_ms: int | None) -> str:
    return "-" if keyframe_ms is None else str(keyframe_ms)


def entry_of(a: Annotation, f: SearchFields) -> dict[str, Any]:
    return {
        "produced_at": a.occurred_at.isoformat(),
        "annotation_id": a.annotation_id,
        "labels": list(f.labels),
        "text": f.text,
        "title_text": f.title_text,
        "numeric": dict(f.numeric),
        "embedding": f.embedding is not None,  # whether a vector was stored for it (never the vector)
    }


def add(versions: Versions, a: Annotation, f: SearchFields | None = None) -> bool:
    """Merge one annotation into ``versions`` (in place); False when it is a replay or older."""
    f = f if f is not None else a.payload.search_fields()
    entry = entry_of(a, f)
    slot = versions.setdefault(a.model, {}).setdefault(a.model_version, {})
    key = keyframe_key(a.keyframe_ms)
    if not is_newer(slot.get(key), entry):
        return False
    slot[key] = entry
    return True


def merge_versions(a: Versions, b: Versions) -> Versions:
    """The union of two documents' histories, newest entry per slot (used to catch up an index copy)."""
    out: Versions = {m: {v: dict(kfs) for v, kfs in vs.items()} for m, vs in a.items()}
    for m, vs in b.items():
        for v, kfs in vs.items():
            slot = out.setdefault(m, {}).setdefault(v, {})
            for k, e in kfs.items():
                if is_newer(slot.get(k), e):
                    slot[k] = e
    return out


@dataclass
class Summary:
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> chosen version's summary
    labels: list[str] = field(default_factory=list)
    text: str = ""
    title_text: str = ""  # ranked like a title (a photo's headline, caption, keywords)
    numeric: dict[str, float] = field(default_factory=dict)
    model_keys: list[str] = field(default_factory=list)  # "model" and "model@version" for every version held


def _newest(kfs: dict[str, dict[str, Any]]) -> tuple[str, str]:
    return max((e["produced_at"], e["annotation_id"]) for e in kfs.values())


def choose_version(by_version: dict[str, dict[str, dict[str, Any]]], active: str | None) -> str:
    if active is not None and active in by_version:
        return active
    return max(by_version, key=lambda v: _newest(by_version[v]))


def summarize(versions: Versions, active: dict[str, str]) -> Summary:
    s = Summary()
    labels: set[str] = set()
    texts: list[str] = []
    title_texts: list[str] = []
    for model in sorted(versions):
        by_version = {v: kfs for v, kfs in versions[model].items() if kfs}
        if not by_version:
            continue
        s.model_keys += [model, *(f"{model}@{v}" for v in sorted(by_version))]
        version = choose_version(by_version, active.get(model))
        kfs = by_version[version]
        m_labels = sorted({lb for e in kfs.values() for lb in e["labels"]})
        m_text = " ".join(e["text"] for _, e in sorted(kfs.items()) if e.get("text")).strip()
        m_title = " ".join(e["title_text"] for _, e in sorted(kfs.items()) if e.get("title_text")).strip()
        if m_title:
            title_texts.append(m_title)
        m_numeric: dict[str, float] = {}
        for e in kfs.values():
            for k, x in e.get("numeric", {}).items():
                m_numeric[k] = max(float(x), m_numeric.get(k, float("-inf")))
        produced_at, annotation_id = _newest(kfs)
        s.models[model] = {
            "version": version,
            "produced_at": produced_at,
            "annotation_id": annotation_id,
            "labels": m_labels,
            "text": m_text,
            "numeric": m_numeric,
            "keyframes": len(kfs),
            "embedding": any(e.get("embedding") for e in kfs.values()),
        }
        labels.update(m_labels)
        if m_text:
            texts.append(m_text)
        for k, x in m_numeric.items():
            s.numeric[k] = max(x, s.numeric.get(k, float("-inf")))
    s.labels = sorted(labels)
    s.text = "\n".join(texts)
    s.title_text = "\n".join(title_texts)
    return s
