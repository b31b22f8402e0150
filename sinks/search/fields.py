"""What each annotation payload contributes to the search document (every backend uses this).

One function per payload kind keeps the backends generic: a new model adds its payload to
schemas/events.py and a branch here, and both PostgreSQL and OpenSearch index it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.events import (
    AnnotationPayload,
    Caption,
    ClipEmbedding,
    FaceDetection,
    ImageClassification,
    NsfwDetection,
    ObjectDetection,
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
    if isinstance(payload, ObjectDetection):
        # COCO class names are labels ("person", "cup"): facets and full text; the count is numeric
        return SearchFields(labels=sorted({o.label.lower() for o in payload.objects}),
                            numeric={"object_count": float(payload.object_count)})
    if isinstance(payload, NsfwDetection):
        # the score is the numeric flag the search filter thresholds; "nsfw" is also a label when set
        return SearchFields(labels=["nsfw"] if payload.nsfw else [], numeric={"nsfw": payload.nsfw_score})
    if isinstance(payload, ClipEmbedding):
        # a binary head (disturbing, meme) has a label named like the head: its probability is a numeric
        # flag/filter; what the heads flagged (disturbing, meme, a confident action) are labels
        numeric = {head: lb.score for head, labels in payload.zero_shot.items() for lb in labels if lb.name == head}
        return SearchFields(labels=sorted(set(payload.flags)), numeric=numeric, embedding=payload.embedding)
    if isinstance(payload, Caption):
        return SearchFields(text=payload.text)
    if isinstance(payload, PerceptualHash):
        return SearchFields()  # near-duplicate hashes live in the NDD index (sinks/ndd_sink.py), not here
    return SearchFields()  # pragma: no cover - every payload kind has a branch above
