"""What each annotation payload contributes to the search document (every backend uses this).

One function per payload kind keeps the backends generic: a new model adds its payload to
schemas/events.py and a branch here, and both PostgreSQL and OpenSearch index it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.events import AnnotationPayload, ImageClassification


@dataclass
class SearchFields:
    labels: list[str] = field(default_factory=list)  # keyword facets + full text
    text: str = ""  # extra full text (OCR lines, captions)
    numeric: dict[str, float] = field(default_factory=dict)  # e.g. face_count, nsfw_score
    embedding: list[float] | None = None  # kNN vector for this model (one per asset and model version)


def search_fields(payload: AnnotationPayload) -> SearchFields:
    if isinstance(payload, ImageClassification):
        return SearchFields(labels=[lb.name.lower() for lb in payload.labels], embedding=payload.embedding)
    return SearchFields()  # pragma: no cover - every payload kind has a branch above
