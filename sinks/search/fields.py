"""What each annotation payload contributes to the search document (every backend uses this).

One function per payload kind keeps the backends generic: a new model adds its payload to
schemas/events.py and a branch here, and both PostgreSQL and OpenSearch index it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.events import (
    AnnotationPayload,
    FaceDetection,
    ImageClassification,
    OcrText,
    PerceptualHash,
    TextEmbedding,
    VideoSummary,
)


@dataclass
class SearchFields:
    labels: list[str] = field(default_factory=list)  # keyword facets + full text
    text: str = ""  # extra full text (OCR lines, captions)
    numeric: dict[str, float] = field(default_factory=dict)  # e.g. face_count, nsfw_score
    embedding: list[float] | None = None  # kNN vector for this model (one per asset and model version)


def search_fields(payload: AnnotationPayload) -> SearchFields:
    if isinstance(payload, ImageClassification):
        return SearchFields(labels=[lb.name.lower() for lb in payload.labels], embedding=payload.embedding)
    if isinstance(payload, FaceDetection):
        # "face" makes "photos with people" a label facet; the count is a numeric facet/filter
        return SearchFields(labels=["face"] if payload.face_count else [],
                            numeric={"face_count": float(payload.face_count)})
    if isinstance(payload, OcrText):
        return SearchFields(text=payload.text, numeric={"text_lines": float(len(payload.lines))})
    if isinstance(payload, TextEmbedding):
        return SearchFields(embedding=payload.embedding)
    if isinstance(payload, VideoSummary):
        # a video is found by anything seen in any keyframe; flags (e.g. nsfw) are labels too
        return SearchFields(
            labels=sorted({t.name.lower() for t in payload.tags} | set(payload.flags)),
            text="\n".join(t.name for t in payload.text_segments),
            numeric=dict(payload.numeric),
            embedding=payload.embedding,
        )
    if isinstance(payload, PerceptualHash):
        return SearchFields()  # near-duplicate hashes live in the NDD index (sinks/ndd_sink.py), not here
    return SearchFields()  # pragma: no cover - every payload kind has a branch above
