"""Video-level summary of one model's per-keyframe annotations (the ``keyframe_ms=None`` annotation).

Generic over payload kinds: it works on what each keyframe payload contributes to search
(``search_fields`` and ``label_scores`` of each payload kind), so a new model's videos are summarised
without new code here:

* labels (ImageNet classes, "face", COCO objects ...) become tags with the time ranges they appear in;
* text lines (OCR) become text segments with time ranges;
* numeric fields (face_count ...) keep their maximum; ``FLAG_LABELS`` seen anywhere become flags
  (a video is NSFW if any keyframe is);
* embeddings are averaged and re-normalised (one "more like this" vector per video).

A range runs from the first to the last keyframe of an unbroken run of keyframes showing the tag.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from schemas.events import AnnotationPayload, TimedTag, TimeRange, VideoSummary

FLAG_LABELS = frozenset({"nsfw", "disturbing"})


def _tags(seen: dict[str, list[tuple[int, float]]], order: list[int]) -> list[TimedTag]:
    pos = {ms: i for i, ms in enumerate(order)}
    tags = []
    for name, hits in seen.items():
        hits.sort()
        ranges: list[TimeRange] = []
        start = prev = hits[0][0]
        for ms, _ in hits[1:]:
            if pos[ms] != pos[prev] + 1:  # a keyframe without the tag in between: new range
                ranges.append(TimeRange(start_ms=start, end_ms=prev))
                start = ms
            prev = ms
        ranges.append(TimeRange(start_ms=start, end_ms=prev))
        tags.append(TimedTag(name=name, score=round(max(s for _, s in hits), 5), keyframes=len(hits),
                             ranges=ranges))
    # most persistent first, then strongest
    return sorted(tags, key=lambda t: (-t.keyframes, -t.score, t.name))


def summarize(keyframes: Sequence[tuple[int, AnnotationPayload]]) -> VideoSummary:
    frames = sorted(keyframes, key=lambda kv: kv[0])
    order = [ms for ms, _ in frames]
    labels: dict[str, list[tuple[int, float]]] = {}
    lines: dict[str, list[tuple[int, float]]] = {}
    numeric: dict[str, float] = {}
    flags: set[str] = set()
    vectors: list[np.ndarray] = []
    for ms, payload in frames:
        f = payload.search_fields()
        scores = payload.label_scores()
        for name in f.labels:
            labels.setdefault(name, []).append((ms, min(1.0, max(0.0, scores.get(name, 1.0)))))
            if name in FLAG_LABELS:
                flags.add(name)
        for line in dict.fromkeys(x.strip() for x in f.text.splitlines() if x.strip()):
            lines.setdefault(line, []).append((ms, 1.0))
        for k, v in f.numeric.items():
            numeric[k] = max(numeric.get(k, v), v)
        if f.embedding is not None:
            vectors.append(np.asarray(f.embedding, dtype=np.float64))
    embedding = None
    if vectors:
        mean = np.mean(vectors, axis=0)
        norm = float(np.linalg.norm(mean))
        if norm > 0:
            embedding = [round(float(x), 6) for x in mean / norm]
    return VideoSummary(keyframes_ms=order, tags=_tags(labels, order), text_segments=_tags(lines, order),
                        numeric=numeric, flags=sorted(flags), embedding=embedding)
