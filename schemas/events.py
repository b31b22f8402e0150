"""Event contracts shared by producers, processors, sinks and downstream subscribers.

Every event carries ``schema`` (its name) and ``schema_version``; consumers reject versions they do
not know (dead-letter, never guess). Ids are deterministic so that a replay or a duplicate delivery
names the same event: the sinks turn at-least-once delivery into an exactly-once effect with them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1

MediaType = Literal["image", "video", "audio"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def annotation_id(asset_id: str, model: str, model_version: str, keyframe_ms: int | None) -> str:
    """Same asset + model + version + keyframe -> same id, whichever process computes it."""
    key = f"{asset_id}|{model}|{model_version}|{'' if keyframe_ms is None else keyframe_ms}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class SearchFields:
    """What one annotation payload contributes to the asset's search document (every backend indexes this)."""

    labels: list[str] = field(default_factory=list)  # keyword facets + full text
    text: str = ""  # extra full text (OCR lines, captions)
    title_text: str = ""  # full text weighted like the asset's title (a photo's headline, caption, keywords)
    numeric: dict[str, float] = field(default_factory=dict)  # e.g. face_count, nsfw_score
    embedding: list[float] | None = None  # kNN vector for this model (one per asset and model version)


class _Payload(BaseModel):
    """An annotation payload kind. Each kind says itself what it means for search and for a video's summary,
    so sinks, processors and the read side never branch on the kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def search_fields(self) -> SearchFields:
        return SearchFields()

    def label_scores(self) -> dict[str, float]:
        """Score of each of its search labels (a video summary keeps the best per label)."""
        return dict.fromkeys(self.search_fields().labels, 1.0)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="Deterministic id; duplicates of one event share it")
    occurred_at: datetime = Field(default_factory=utcnow)


# ---------------------------------------------------------------------------- media.uploaded
class WorkingCopy(BaseModel):
    """A smaller, upright JPEG of a large image, made once at ingest (producers/ingest.py) before the event exists:
    a processor whose model looks at no more than its longest side reads it instead of the original (one decode
    of the original per asset instead of one per model). EXIF orientation is already applied; it has no EXIF."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    object_key: str = Field(description="in the original's bucket; derived from the asset id and the copy's spec")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    size_bytes: int = Field(ge=0)
    source_width: int = Field(gt=0, description="the original's upright width (EXIF orientation applied)")
    source_height: int = Field(gt=0, description="the original's upright height (EXIF orientation applied)")


class MediaUploaded(_Event):
    """An asset's original is in the object store and its row is in PostgreSQL."""

    schema_: Literal["media.uploaded"] = Field("media.uploaded", alias="schema")
    asset_id: str = Field(description="sha256 of the content: uploads are content-addressed")
    bucket: str
    object_key: str
    media_type: MediaType
    content_type: str
    size_bytes: int = Field(ge=0)
    filename: str = Field(max_length=1024)
    title: str | None = None
    description: str | None = None
    source: str | None = Field(None, description="upload | bulk | watch:<folder> | feed:<url>")
    collection: str | None = None
    working_copy: WorkingCopy | None = Field(
        None, description="images larger than every enabled model's input: a smaller upright JPEG made at ingest "
                          "(absent: read the original)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------- annotations
class Label(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    score: float = Field(ge=0.0, le=1.0)
    class_id: int | None = None


class ImageClassification(_Payload):
    """ImageNet-style labels plus the image embedding of the same forward pass."""

    kind: Literal["classification_embedding"] = "classification_embedding"
    labels: list[Label]
    embedding: list[float] = Field(description="L2-normalised image embedding")
    embedding_dim: int

    def search_fields(self) -> SearchFields:
        return SearchFields(labels=[lb.name.lower() for lb in self.labels], embedding=self.embedding)

    def label_scores(self) -> dict[str, float]:
        return {lb.name.lower(): lb.score for lb in self.labels}


class Box(BaseModel):
    """Axis-aligned box, normalised to the image (or video frame): 0..1 from the top-left corner, so it
    stays valid whatever resolution the frame is shown at."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    x1: float = Field(ge=0.0, le=1.0)
    y1: float = Field(ge=0.0, le=1.0)
    x2: float = Field(ge=0.0, le=1.0)
    y2: float = Field(ge=0.0, le=1.0)


class Face(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    box: Box
    score: float = Field(ge=0.0, le=1.0)


class FaceDetection(_Payload):
    """Faces found in an image or keyframe (detection only: no identity, no recognition)."""

    kind: Literal["face_detection"] = "face_detection"
    face_count: int = Field(ge=0)
    faces: list[Face]

    def search_fields(self) -> SearchFields:
        # "face" makes "photos with people" a label facet; the count is a numeric facet/filter
        return SearchFields(labels=["face"] if self.face_count else [], numeric={"face_count": float(self.face_count)})

    def label_scores(self) -> dict[str, float]:
        return {"face": max((f.score for f in self.faces), default=0.0)}


class TextLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str
    score: float = Field(ge=0.0, le=1.0)
    box: Box


class OcrText(_Payload):
    """Text read in an image or keyframe, line by line in reading order."""

    kind: Literal["ocr_text"] = "ocr_text"
    text: str = Field(description="All lines joined with newlines (full-text search)")
    lines: list[TextLine]

    def search_fields(self) -> SearchFields:
        return SearchFields(text=self.text, numeric={"text_lines": float(len(self.lines))})


class TextEmbedding(_Payload):
    """Sentence embedding of an asset's annotation text (labels, objects, OCR, title, description)."""

    kind: Literal["text_embedding"] = "text_embedding"
    embedding: list[float] = Field(description="L2-normalised sentence embedding")
    embedding_dim: int
    text_sha256: str = Field(description="sha256 of the embedded text (re-embedded only when it changes)")
    text_chars: int = Field(ge=0)
    sources: list[str] = Field(description="models (and 'metadata') whose text went into it")

    def search_fields(self) -> SearchFields:
        return SearchFields(embedding=self.embedding)


class DetectedObject(BaseModel):
    """One detected object (COCO class, or a body-part region of the NSFW detector)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: str
    class_id: int = Field(ge=0)
    score: float = Field(ge=0.0, le=1.0)
    box: Box


class ObjectDetection(_Payload):
    """Objects found in an image or keyframe (COCO-80 classes), highest score first."""

    kind: Literal["object_detection"] = "object_detection"
    object_count: int = Field(ge=0)
    objects: list[DetectedObject]

    def search_fields(self) -> SearchFields:
        # COCO class names are labels ("person", "cup"): facets and full text; the count is numeric
        return SearchFields(labels=sorted({o.label.lower() for o in self.objects}),
                            numeric={"object_count": float(self.object_count)})

    def label_scores(self) -> dict[str, float]:
        scores: dict[str, float] = {}
        for o in self.objects:
            scores[o.label.lower()] = max(scores.get(o.label.lower(), 0.0), o.score)
        return scores


class NsfwDetection(_Payload):
    """Moderation: exposed/covered body-part regions and whether the image counts as NSFW."""

    kind: Literal["nsfw"] = "nsfw"
    nsfw: bool = Field(description="nsfw_score >= threshold")
    nsfw_score: float = Field(ge=0.0, le=1.0, description="Highest score of an explicit (exposed) region class")
    threshold: float = Field(ge=0.0, le=1.0)
    regions: list[DetectedObject]

    def search_fields(self) -> SearchFields:
        # the score is the numeric flag the search filter thresholds; "nsfw" is also a label when set
        return SearchFields(labels=["nsfw"] if self.nsfw else [], numeric={"nsfw": self.nsfw_score})

    def label_scores(self) -> dict[str, float]:
        return {"nsfw": self.nsfw_score}


class ClipEmbedding(_Payload):
    """CLIP image embedding (cross-modal search) plus the zero-shot heads computed from it."""

    kind: Literal["clip_embedding"] = "clip_embedding"
    embedding: list[float] = Field(description="L2-normalised CLIP image embedding")
    embedding_dim: int
    zero_shot: dict[str, list[Label]] = Field(
        default_factory=dict, description="Head name (disturbing, meme, action) -> its labels, best first")
    flags: list[str] = Field(default_factory=list, description="Heads over their threshold, e.g. disturbing")

    def search_fields(self) -> SearchFields:
        # a binary head (disturbing, meme) has a label named like the head: its probability is a numeric
        # flag/filter; what the heads flagged (disturbing, meme, a confident action) are labels
        numeric = {head: lb.score for head, labels in self.zero_shot.items() for lb in labels if lb.name == head}
        return SearchFields(labels=sorted(set(self.flags)), numeric=numeric, embedding=self.embedding)


class Caption(_Payload):
    """A generated description of an image or keyframe (optional captioning model)."""

    kind: Literal["caption"] = "caption"
    text: str
    score: float | None = Field(None, ge=0.0, le=1.0)

    def search_fields(self) -> SearchFields:
        return SearchFields(text=self.text)


class DescribedFace(BaseModel):
    """One face with what recognition needs: its box, how recognisable it is, and where its descriptor is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    box: Box
    score: float = Field(ge=0.0, le=1.0, description="Detector score")
    size_px: float = Field(ge=0.0, description="Shorter side of the box in model-canvas pixels")
    sharpness: float = Field(ge=0.0, description="Variance of the aligned crop's Laplacian (blur lowers it)")
    recognisable: bool = Field(description="Large and sharp enough to be clustered into a person")
    descriptor_ref: str | None = Field(
        None, pattern="^[0-9a-f]{64}$",
        description="sha256 of the float32 descriptor; the bytes are the object faces/<ref> (not in the event)")
    descriptor: list[float] | None = Field(
        None, description="The 128-d descriptor itself, only where an installation configured it (docs/people.md)")


class FaceDescriptors(_Payload):
    """Faces of an image or keyframe with their recognition descriptors (people: sinks/people_sink.py)."""

    kind: Literal["face_descriptors"] = "face_descriptors"
    detector: str = Field(description="Where the boxes came from: dlib (HOG) or mtcnn")
    face_count: int = Field(ge=0)
    faces: list[DescribedFace]

    def search_fields(self) -> SearchFields:
        n = sum(1 for f in self.faces if f.recognisable)
        return SearchFields(labels=["face"] if self.face_count else [], numeric={"recognisable_faces": float(n)})

    def label_scores(self) -> dict[str, float]:
        return {"face": max((f.score for f in self.faces), default=0.0)}


class TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)


class TimedTag(BaseModel):
    """Something seen in a video (a label, 'face', an OCR line) and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    score: float = Field(ge=0.0, le=1.0, description="Highest score over the keyframes")
    keyframes: int = Field(ge=1)
    ranges: list[TimeRange]


class VideoSummary(_Payload):
    """One model's video-level view, merged from its per-keyframe annotations (``keyframe_ms`` None)."""

    kind: Literal["video_summary"] = "video_summary"
    keyframes_ms: list[int]
    tags: list[TimedTag] = Field(description="Labels / objects / 'face' with the time ranges they appear in")
    text_segments: list[TimedTag] = Field(default_factory=list, description="OCR lines with time ranges")
    numeric: dict[str, float] = Field(default_factory=dict, description="Max over keyframes (e.g. face_count)")
    flags: list[str] = Field(default_factory=list, description="Set if any keyframe raised it (e.g. nsfw)")
    embedding: list[float] | None = Field(None, description="Normalised mean of the keyframe embeddings")

    def search_fields(self) -> SearchFields:
        # a video is found by anything seen in any keyframe; flags (e.g. nsfw) are labels too
        return SearchFields(
            labels=sorted({t.name.lower() for t in self.tags} | set(self.flags)),
            text="\n".join(t.name for t in self.text_segments),
            numeric=dict(self.numeric),
            embedding=self.embedding,
        )


class RegionHash(BaseModel):
    """The PDQ hash of a region of a picture or frame: its content area without uniform margins, or the
    picture embedded in a screenshot (models/pdq/regions.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    box: list[float] = Field(min_length=4, max_length=4,
                             description="x0, y0, x1, y1 as fractions of the image's width and height")
    hash: str = Field(pattern="^[0-9a-f]{64}$", description="PDQ hash of the region")
    quality: int = Field(ge=0, le=100, description="PDQ quality of the region")


class FrameHash(BaseModel):
    """One sampled video frame's perceptual hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    t_ms: int = Field(ge=0, description="Position from the video's first frame")
    hash: str = Field(pattern="^[0-9a-f]{64}$", description="PDQ hash, 64 hex digits (canonical PDQ order)")
    quality: int = Field(ge=0, le=100, description="PDQ quality; low (black/uniform) frames are never evidence")
    regions: list[RegionHash] = Field(default_factory=list, description="Letterboxed/bordered frames: content area")


class PerceptualHash(_Payload):
    """PDQ near-duplicate hash of an image, or of a video's frames sampled at a fixed rate."""

    kind: Literal["perceptual_hash"] = "perceptual_hash"
    algorithm: Literal["pdq"] = "pdq"
    media_type: MediaType
    hash: str | None = Field(None, pattern="^[0-9a-f]{64}$", description="Images: the PDQ hash; videos: None")
    quality: int = Field(ge=0, le=100, description="Images: PDQ quality; videos: the best frame's")
    frames: list[FrameHash] = Field(default_factory=list, description="Videos: one hash per sampled frame")
    interval_ms: int | None = Field(None, description="Videos: sampling interval")
    duration_ms: int | None = Field(None, description="Videos: duration")
    regions: list[RegionHash] = Field(default_factory=list,
                                      description="Images: hashes of the content area / embedded picture")
    features: str | None = Field(None, description="Images: ORB keypoints and descriptors for geometric "
                                                   "verification, base64 of models/pdq/features.py's packed form")


class Rendition(BaseModel):
    """One derived JPEG of an asset, stored in the object store beside the original."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["thumb", "preview", "frame"]
    key: str = Field(description="Object key: renditions/<id[:2]>/<id>/<spec>/<file>.jpg (deterministic)")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=0, description="Size of the stored JPEG")
    t_ms: int | None = Field(None, ge=0, description="Frames: the keyframe's time (the models' keyframe times)")


class Renditions(_Payload):
    """Thumbnail and preview of an image (a video: of its poster frame) plus a video's keyframe strip, for
    display. Adds nothing to search."""

    kind: Literal["renditions"] = "renditions"
    media_type: MediaType
    width: int = Field(ge=1, description="The source's upright width")
    height: int = Field(ge=1, description="The source's upright height")
    duration_ms: int | None = Field(None, description="Videos: duration")
    items: list[Rendition]

    def search_fields(self) -> SearchFields:
        return SearchFields()

    def label_scores(self) -> dict[str, float]:
        return {}


class SpokenWord(BaseModel):
    """One word of a transcript with its time (from the recognizer's word alignment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)
    word: str
    p: float = Field(ge=0.0, le=1.0, description="The recognizer's probability of the word")


class SpeechSegment(BaseModel):
    """A stretch of speech (a voice-activity region, split by the recognizer) and what was said."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_ms: int = Field(ge=0, description="From the start of the asset")
    end_ms: int = Field(ge=0)
    text: str
    language: str | None = Field(None, description="The language detected for the chunk holding it")
    avg_logprob: float = Field(description="Mean token log-probability (low: unreliable text)")
    no_speech_prob: float = Field(ge=0.0, le=1.0)
    words: list[SpokenWord] = Field(default_factory=list)
    vector: str | None = Field(None, description="The MiniLM meaning vector of text (Transcript.vector_model): "
                                                 "base64 of a little-endian float32 scale then int8[dim] "
                                                 "(x = int8 * scale); None when not embedded")


class Transcript(_Payload):
    """What is said in a video's or audio file's sound, segment by segment with times (the speech model).

    ``scope="chunk"``: one window of the audio (``keyframe_ms`` = its start), adds nothing to search;
    ``scope="asset"``: the whole transcript (``keyframe_ms`` None), what search indexes and subtitles export."""

    kind: Literal["transcript"] = "transcript"
    scope: Literal["chunk", "asset"] = "asset"
    status: Literal["ok", "no_audio", "silent", "partial", "undecodable", "capped"] = Field(
        description="ok; no_audio (no audio stream); silent (no speech found); partial (the audio stream is "
                    "damaged: transcribed up to the damage, see note); undecodable (a video whose audio stream "
                    "cannot be decoded at all, see note); capped (longer than speech.max_minutes)")
    language: str | None = Field(None, description="ISO 639-1 code of the language spoken most")
    language_probability: float = Field(0.0, ge=0.0, le=1.0)
    duration_ms: int | None = Field(None, description="The audio's duration, when the container says")
    processed_ms: int = Field(0, ge=0, description="How much audio was transcribed")
    skipped_ms: int = Field(0, ge=0, description="Audio beyond the cap, not transcribed")
    note: str | None = Field(None, description="Why status is not ok, for a human")
    source_rate: int = Field(0, ge=0, description="The audio stream's sample rate (Hz)")
    source_channels: int = Field(0, ge=0)
    segments: list[SpeechSegment] = Field(default_factory=list)
    vector_model: str | None = Field(None, description="The text model and version of the segments' vectors "
                                                       "(\"text_embed:<version>\"), None when not embedded")

    def search_fields(self) -> SearchFields:
        if self.scope == "chunk":
            return SearchFields()  # the asset-level transcript carries the text (no double counting)
        # "speech" (something is said) and the language as a prefixed label: the "language" facet
        # (retrieval/search/interface.py SPEECH_FACETS), filtered and counted like the other prefixed labels
        labels = (["speech"] + ([f"language:{self.language}"] if self.language else [])) if self.segments else []
        return SearchFields(labels=labels, text="\n".join(s.text for s in self.segments),
                            numeric={"speech_segments": float(len(self.segments)),
                                     "speech_ms": float(sum(s.end_ms - s.start_ms for s in self.segments))})

    def label_scores(self) -> dict[str, float]:
        return {lb: self.language_probability for lb in self.search_fields().labels}


# ---------------------------------------------------------------------------- embedded metadata
# Facets of the metadata record travel as prefixed labels ("credit:reuters"): every engine already indexes,
# filters and counts labels exactly, so a facet needs no new column (retrieval/search/interface.py META_FACETS).
META_FACETS = ("byline", "credit", "iptc_source", "country", "city", "taken_month", "taken_day")


def facet_label(facet: str, value: str) -> str:
    return f"{facet}:{' '.join(value.split()).lower()}"


def is_facet_label(label: str) -> bool:
    head, sep, _ = label.partition(":")
    return bool(sep) and head in META_FACETS


class ImageRegion(BaseModel):
    """An IPTC image region (Iptc4xmpExt:ImageRegion): a named area, e.g. a person shown."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    role: str | None = None
    box: Box | None = Field(None, description="Rectangle regions in relative units; None for other shapes")


class MediaMetadata(_Payload):
    """What the file says about itself (IPTC IIM, XMP, EXIF; a video's container tags; an XMP sidecar; an agency
    document), normalised to one record (docs/metadata.md lists every field and where it goes)."""

    kind: Literal["media_metadata"] = "media_metadata"
    headline: str | None = None
    title: str | None = Field(None, description="Object name / dc:title (a short slug, not the caption)")
    caption: str | None = Field(None, description="Description / caption-abstract")
    byline: list[str] = Field(default_factory=list, description="Creators (photographers)")
    byline_title: str | None = None
    credit: str | None = Field(None, description="Credit line to print with the image")
    source: str | None = Field(None, description="Supplier / original owner (IPTC Source)")
    copyright: str | None = None
    usage_terms: str | None = Field(None, description="Rights usage terms / licence text")
    licence_url: str | None = Field(None, description="xmpRights:WebStatement")
    instructions: str | None = Field(None, description="Special instructions (e.g. an embargo note)")
    keywords: list[str] = Field(default_factory=list)
    subject_codes: list[str] = Field(default_factory=list, description="IPTC subject / media topic codes")
    location: str | None = Field(None, description="Sublocation")
    city: str | None = None
    region: str | None = Field(None, description="Province / state")
    country: str | None = None
    country_code: str | None = None
    date_created: str | None = Field(None, description="As written (ISO 8601), with its time zone when known")
    taken_at: datetime | None = Field(None, description="date_created in UTC (local time taken as UTC if no zone)")
    gps_lat: float | None = Field(None, ge=-90.0, le=90.0)
    gps_lon: float | None = Field(None, ge=-180.0, le=180.0)
    gps_alt: float | None = None
    make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    orientation: int | None = Field(None, ge=1, le=8)
    width: int | None = Field(None, ge=0)
    height: int | None = Field(None, ge=0)
    digital_source_type: str | None = Field(None, description="IPTC digital source type URI")
    ai_generated: bool = Field(False, description="The digital source type says trained algorithmic media")
    regions: list[ImageRegion] = Field(default_factory=list)
    formats: list[str] = Field(default_factory=list, description="Where it came from: iptc, xmp, exif, sidecar, "
                                                                    "container, ninjs, newsml")
    warnings: list[str] = Field(default_factory=list, description="What was skipped or repaired, and why")
    raw: dict[str, str] = Field(default_factory=dict, description="The tags as read (values truncated)")

    def search_fields(self) -> SearchFields:
        # headline and caption rank like a title (keywords too: labels are); names and places are text and facets
        title_text = "\n".join(x for x in (self.headline, self.title, self.caption) if x)
        labels = {k.strip().lower() for k in self.keywords if k.strip()}
        for facet, values in (("byline", self.byline), ("credit", [self.credit]), ("iptc_source", [self.source]),
                              ("country", [self.country]), ("city", [self.city])):
            labels |= {facet_label(facet, v) for v in values if v and v.strip()}
        numeric: dict[str, float] = {}
        if self.taken_at is not None:
            labels |= {facet_label("taken_month", self.taken_at.strftime("%Y-%m")),
                       facet_label("taken_day", self.taken_at.strftime("%Y-%m-%d"))}
            numeric["taken_at"] = self.taken_at.timestamp()
        if self.gps_lat is not None and self.gps_lon is not None:
            numeric |= {"gps_lat": self.gps_lat, "gps_lon": self.gps_lon}
        if self.ai_generated:
            labels.add("ai_generated")
        text = " ".join(x for x in (*self.byline, self.credit, self.source, self.location, self.city, self.region,
                                    self.country) if x)
        return SearchFields(labels=sorted(labels), text=text, title_text=title_text, numeric=numeric)


AnnotationPayload = Annotated[
    ImageClassification | FaceDetection | OcrText | TextEmbedding | VideoSummary | PerceptualHash
    | ObjectDetection | NsfwDetection | ClipEmbedding | Caption | Renditions | FaceDescriptors | Transcript
    | MediaMetadata,
    Field(discriminator="kind")
]


class Annotation(_Event):
    """One model's output for one asset (or one keyframe of a video)."""

    schema_: Literal["annotation"] = Field("annotation", alias="schema")
    annotation_id: str
    asset_id: str
    model: str
    model_version: str
    keyframe_ms: int | None = Field(None, description="Position in a video; None for images")
    payload: AnnotationPayload

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------- dead letters
class DeadLetter(_Event):
    """Something that cannot be processed, with the reason. It never blocks a partition."""

    schema_: Literal["dead_letter"] = Field("dead_letter", alias="schema")
    stage: str = Field(description="who gave up, e.g. processor:efficientnet_lite0 or sink:postgres")
    reason: str
    error_type: str
    asset_id: str | None = None
    model: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    raw_value: str | None = Field(None, description="The offending record (truncated) when it was malformed")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------- media.lifecycle
class MediaLifecycle(_Event):
    """Rights and lifecycle of an asset (docs/metadata.md): a kill (withdrawn: gone from every index, kept as a
    tombstone), a delete (gone, original included), a restore, an embargo or a metadata edit. The state is in
    PostgreSQL (``asset_lifecycle``) before the event is published; subscribers and the sinks apply it."""

    schema_: Literal["media.lifecycle"] = Field("media.lifecycle", alias="schema")
    asset_id: str
    action: Literal["kill", "delete", "restore", "embargo", "edit"]
    seq: int = Field(ge=1, description="The asset's lifecycle sequence number (higher = later)")
    reason: str | None = None
    actor: str | None = None
    embargo_until: datetime | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# a withheld agency item is held like an embargo without end (sinks/lifecycle_sink.py); its usable version releases it
WITHHELD_UNTIL = datetime(9999, 12, 31, tzinfo=UTC)


class LifecycleRequest(_Event):
    """A producer asks for a lifecycle change of an asset it delivered (an agency's ``canceled`` notice: kill;
    ``withheld``: hold; the item usable again: release). The producers' floor cannot change the lifecycle itself;
    the lifecycle sink (sinks/lifecycle_sink.py) applies each request exactly once, through the same machinery as
    the API's kill, and the change then goes out as a ``media.lifecycle`` event."""

    schema_: Literal["media.lifecycle.request"] = Field("media.lifecycle.request", alias="schema")
    asset_id: str
    action: Literal["kill", "withhold", "release"] = Field(
        description="kill: a tombstone, gone from every index; withhold: hidden like an embargo without end; "
                    "release: a withhold lifted (an embargo or a kill is never lifted by a producer)")
    reason: str | None = Field(None, max_length=2000)
    actor: str = Field(max_length=1000, description="who asks, e.g. agency:reuters:newsml")
    item_uri: str | None = Field(None, max_length=2000, description="the agency item (ninjs uri, NewsML-G2 guid)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------- the per-asset aggregate
class ModelOutcome(BaseModel):
    """One expected model's final word on the asset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    status: Literal["done", "failed", "skipped"] = Field(
        description="done: its annotation is in; failed: dead-lettered (reason); skipped: nothing to do "
                    "(e.g. a text embedding of an asset without text)")
    model_version: str | None = None
    annotation_id: str | None = Field(None, description="The annotation's id (videos: the summary's)")
    reason: str | None = None


class MergedLabel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    score: float = Field(ge=0.0, le=1.0, description="The best score any model gave it")
    models: list[str]


class EmbeddingRef(BaseModel):
    """Where an embedding is, not the vector: fetch it with the annotation id (topic annotations.<model>,
    the API's asset card, or PostgreSQL ``annotations``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    model_version: str
    annotation_id: str
    dim: int = Field(ge=1)


class AssetInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: str
    content_type: str
    size_bytes: int = Field(ge=0)
    title: str | None = None
    description: str | None = None
    source: str | None = None
    collection: str | None = None
    uploaded_at: datetime


class AssetAnnotated(_Event):
    """The asset is fully annotated: every model expected for it (the active models for its media type when
    the upload was read) is final. One event per asset; a model that lands later (a new model, a new version)
    emits an update that names the event it supersedes. The id is a hash of the content and ``occurred_at``
    the newest input's time, so a re-emission is a byte-identical duplicate."""

    schema_: Literal["assets.annotated"] = Field("assets.annotated", alias="schema")
    asset_id: str
    media_type: MediaType
    supersedes: str | None = Field(None, description="The event id of the previous assets.annotated of this asset")
    asset: AssetInfo
    models: list[ModelOutcome] = Field(description="Every expected (or later added) model, by name")
    labels: list[MergedLabel] = Field(description="Labels, objects, faces and flags of every model, merged")
    text: dict[str, str] = Field(description="Per model: its free text (OCR lines, captions, transcripts)")
    numeric: dict[str, float] = Field(description="<model>.<name>: e.g. face_mtcnn.face_count, nsfw.nsfw_score")
    embeddings: list[EmbeddingRef] = Field(description="By reference, never inline")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


E = TypeVar("E", bound=_Event)

EVENT_TYPES: dict[str, type[_Event]] = {
    "media.uploaded": MediaUploaded,
    "annotation": Annotation,
    "dead_letter": DeadLetter,
    "assets.annotated": AssetAnnotated,
    "media.lifecycle": MediaLifecycle,
    "media.lifecycle.request": LifecycleRequest,
}


def dump(event: _Event) -> bytes:
    return event.model_dump_json(by_alias=True).encode()


class SchemaError(ValueError):
    """A record that is not a valid event of the expected kind (dead-letter it)."""


def parse(raw: bytes | None, expected: type[E]) -> E:
    """Parse one record; every failure is a SchemaError with a reason a human can act on."""
    import json

    from pydantic import ValidationError

    if not raw:
        raise SchemaError("empty record value")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SchemaError(f"expected a JSON object, got {type(obj).__name__}")
    name = expected.model_fields["schema_"].default
    if obj.get("schema") != name:
        raise SchemaError(f"expected schema {name!r}, got {obj.get('schema')!r}")
    if obj.get("schema_version") != SCHEMA_VERSION:
        raise SchemaError(
            f"unsupported schema_version {obj.get('schema_version')!r} for {name} (this build reads {SCHEMA_VERSION})"
        )
    try:
        return expected.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise SchemaError(f"invalid {name}: {loc}: {first['msg']} ({exc.error_count()} error(s))") from None
