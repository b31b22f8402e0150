"""One settings object for every service, read from ARGUS_* environment variables.

Nested groups use ``__``: ``ARGUS_KAFKA__BOOTSTRAP=broker:9092``. Every endpoint defaults to the
embedded stack on 127.0.0.1 (ports from ``ports``); production points them at real clusters.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Ports(BaseModel):
    """Loopback ports of the embedded stack. SeaweedFS opens several; all are set explicitly
    because its defaults (9333, 8888, 8333, ...) collide with other servers."""

    kafka: int = 19092
    s3: int = 18333
    seaweed_master: int = 19333
    seaweed_volume: int = 18080
    seaweed_filer: int = 18888
    seaweed_master_grpc: int = 29333
    seaweed_volume_grpc: int = 28080
    seaweed_filer_grpc: int = 28888
    seaweed_s3_grpc: int = 28333
    seaweed_webdav: int = 17333
    seaweed_admin: int = 23646
    seaweed_iceberg: int = 18181
    postgres: int = 15432
    triton_http: int = 18000
    triton_grpc: int = 18001
    triton_metrics: int = 18002
    api: int = 8080
    grpc: int = 50051  # on-demand annotation (api/grpc_service.py, docs/interfaces.md)


class KafkaSettings(BaseModel):
    bootstrap: str | None = None  # None -> embedded broker on 127.0.0.1:ports.kafka
    # tansu: JoinGroup waits session.timeout/2, so keep it small (docs/embedded-stack.md)
    session_timeout_ms: int = 6000
    partitions: int = 4
    # embedded broker storage: "s3" (durable, on the embedded SeaweedFS) or "memory"
    storage: str = "s3"
    topic_prefix: str = ""


class S3Settings(BaseModel):
    endpoint: str | None = None  # host:port; None -> embedded SeaweedFS
    access_key: str = "argus"
    secret_key: str = "argus-secret-key"
    region: str = "us-east-1"
    secure: bool = False
    media_bucket: str = "argus-media"
    broker_bucket: str = "argus-broker"  # tansu's durable storage (embedded only)
    presign_expiry_s: int = 900


class PostgresSettings(BaseModel):
    dsn: str | None = None  # None -> embedded PostgreSQL
    user: str = "postgres"
    database: str = "argus"


class TritonSettings(BaseModel):
    url: str | None = None  # host:port of Triton's HTTP endpoint; None -> embedded
    timeout_s: float = 60.0
    model_config_name: str = "cpu"  # configs/<name>.pbtxt; production uses config.pbtxt
    # "auto": the embedded server sizes each model's instances and ORT threads from the cores (core/placement.py),
    # never below configs/cpu.pbtxt; "shipped": configs/cpu.pbtxt as is
    placement: str = "auto"
    cores: int | None = None  # None -> the process's CPU affinity
    # models the embedded server loads; None -> the enabled models served by Triton (models.registry.triton_models)
    models: list[str] | None = None


class LimitSettings(BaseModel):
    max_upload_bytes: int = 200 * 1024 * 1024
    max_image_pixels: int = 80_000_000  # decompression-bomb guard
    allowed_types: list[str] = Field(
        default_factory=lambda: [
            "image/jpeg",
            "image/png",
            "image/webp",
            "image/gif",
            "image/tiff",
            "image/bmp",
            "image/heic",  # iPhone photos (pillow-heif)
            "image/avif",
            "video/mp4",
            "video/quicktime",
            "video/webm",
            "video/x-matroska",
            # audio-only assets (the speech model; docs/video.md)
            "audio/wav",
            "audio/mpeg",
            "audio/flac",
            "audio/ogg",
            "audio/mp4",
        ]
    )


class ProcessorSettings(BaseModel):
    instances: int | None = None  # processes per model in the consumer group (<= partitions); None -> placement
    infer_concurrency: int = 2  # a batch goes to Triton as this many parallel requests (one per instance)
    batch_size: int = 16
    batch_timeout_ms: int = 50
    retry_max_wait_s: float = 30.0  # backoff cap while Triton/S3 are unreachable (retried forever, never dropped)
    # decode a JPEG at the DCT scale the model needs (Model.input_side); False: full resolution (the baseline
    # benchmarks.suite compares against)
    scaled_decode: bool = True
    # images larger than the largest enabled model input get ONE working copy at ingest (producers/ingest.py):
    # decoded once at the DCT scale, resized to that side, JPEG at this quality; processors whose model looks at
    # no more than its side read it instead of the original. False: no copy is made or read (the baseline)
    working_copy: bool = True
    working_copy_quality: int = Field(95, ge=50, le=100)


class VideoSettings(BaseModel):
    """Keyframes per video for the annotation models (core/video.py): bounded CPU and memory."""

    max_keyframes: int = 16  # per video and model (the strongest scene changes win)
    sample_ms: int = 500  # scene-change sampling interval (stretched for long videos)
    max_samples: int = 240  # sampled frames per video, whatever its length
    scene_threshold: float = 0.12  # mean abs difference of 32x32 grey thumbnails (0..1)
    fill_ms: int = 10_000  # a long static shot still gets a keyframe this often
    max_side: int = 1280  # frames are downscaled to this while decoding


class SpeechSettings(BaseModel):
    """The speech model (models/speech_whisper.py, docs/video.md): bounded audio per asset."""

    max_minutes: float = 120.0  # audio decoded per asset; the rest is reported as skipped (Transcript.skipped_ms)
    language: str | None = None  # force a language (ISO 639-1) instead of detecting it per chunk


class ObservabilitySettings(BaseModel):
    """Each worker's ops endpoint: /metrics (Prometheus), /healthz (liveness), /readyz (readiness)."""

    port: int = 0  # 0 = off (tests); production: one port per container, e.g. 9400
    host: str = "127.0.0.1"  # 0.0.0.0 inside a container so Prometheus can scrape it
    lag_interval_s: float = 5.0  # how often consumer lag / outbox backlog gauges are refreshed


class ServiceSettings(BaseModel):
    """``argus serve``: how the supervisor restarts workers (argus/service.py, docs/deployment.md)."""

    backoff_initial_s: float = 1.0  # first restart delay after a crash; doubles per consecutive crash
    backoff_max_s: float = 30.0  # restart delay cap
    stable_after_s: float = 60.0  # a worker that ran this long has recovered: its backoff starts over
    crash_loop_exits: int = 5  # this many exits within crash_loop_window_s -> the worker is degraded
    crash_loop_window_s: float = 120.0
    degraded_retry_s: float = 600.0  # a degraded worker is tried once more after this long (0 = never)
    drain_timeout_s: float = 60.0  # SIGTERM -> workers finish their batches; SIGKILL after this long
    api_head_start_s: float = 15.0  # the API starts alone until it listens (at most this long), then the rest


class AnnotateSettings(BaseModel):
    """On-demand annotation (gRPC ``Annotate``/``AnnotateStream`` and ``POST /v1/annotate``; api/annotate.py)."""

    host: str = "127.0.0.1"  # where the gRPC server binds; expose it deliberately
    grpc_enabled: bool = True  # run the gRPC worker under `argus serve`
    max_bytes: int = 32 * 1024 * 1024  # an asset given as bytes or fetched from a URL; more -> RESOURCE_EXHAUSTED
    default_deadline_s: float = 60.0  # when the client sets no deadline
    fetch_timeout_s: float = 20.0  # a URL's download (each operation and the whole body)
    workers: int = 8  # concurrent model runs (threads) in one server


class WebhookSettings(BaseModel):
    """Webhooks for ``assets.annotated`` (sinks/webhook_sink.py, docs/interfaces.md)."""

    enabled: bool = True  # run the delivery worker under `argus serve`
    max_attempts: int = 8  # then the delivery is dead-lettered (status 'dead')
    backoff_initial_s: float = 5.0  # the wait after the first failure; doubles per attempt
    backoff_max_s: float = 900.0
    timeout_s: float = 10.0  # one POST
    poll_s: float = 1.0  # how often due deliveries are looked for
    # SSRF guard: receivers must be globally routable unless listed here (e.g. "127.0.0.0/8" in tests)
    allow_networks: list[str] = Field(default_factory=list)


class SecuritySettings(BaseModel):
    """API authentication and abuse limits (core/auth.py, api/security.py)."""

    # hashed keys accepted besides the api_keys table: "sha256:<hex>:<scope>[,<scope>...]"
    api_key_hashes: list[str] = Field(default_factory=list)
    anonymous_read: bool = True  # search/cards/downloads without a key (a newsroom intranet default)
    rate_per_s: float = 50.0  # token bucket per API key (or client IP when anonymous)
    rate_burst: int = 100
    max_request_bytes: int | None = None  # None -> limits.max_upload_bytes + 1 MiB of multipart overhead
    key_cache_s: float = 30.0  # how long a key looked up in PostgreSQL is trusted (revocation delay)


class FeedSettings(BaseModel):
    """The feed poller's fetch policy (producers/feed_poller.py, core/netguard.py)."""

    poll_interval_s: float = 300.0
    timeout_s: float = 20.0
    max_feed_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    max_items_per_poll: int = 200
    user_agent: str = "argus-feed-poller/0.1"
    # SSRF guard: only globally routable addresses unless listed here (e.g. "127.0.0.0/8" in tests)
    allow_networks: list[str] = Field(default_factory=list)


class FtpAccountSettings(BaseModel):
    """One FTP account (producers/ftp_server.py FtpAccount): only the sha256 of the password is kept."""

    user: str
    password_sha256: str
    collection: str | None = None
    source: str | None = None  # default: ftp:<user>
    agency: bool = False  # media waits for its ninjs / NewsML-G2 document


class FtpSettings(BaseModel):
    """The FTP ingest server (``argus run ftp``; started by ``argus serve`` only when accounts are configured).
    FTPS (explicit AUTH TLS) with ``tls``; docs/metadata.md."""

    host: str = "127.0.0.1"
    port: int = 2121
    passive_ports: tuple[int, int] | None = None  # first, last (inclusive): the range a firewall opens
    masquerade_address: str | None = None  # the public address behind NAT, for PASV replies
    root: Path | None = None  # staging folder; None -> <state_dir>/ftp
    accounts: list[FtpAccountSettings] = Field(default_factory=list)
    tls: bool = False  # offer FTPS (AUTH TLS); on by itself when tls_required or a certfile is set
    tls_required: bool = False  # refuse logins before AUTH TLS and transfers before PROT P
    certfile: Path | None = None  # PEM chain; None with TLS on -> a self-signed one in <state_dir>/ftp-tls/
    keyfile: Path | None = None  # PEM key; None -> the certfile holds it (or the self-signed one's)


class OpenSearchSettings(BaseModel):
    """The scale-out search backend (``search_backend = "opensearch"``); see docs/search.md."""

    url: str = "http://127.0.0.1:9200"  # comma-separated for several nodes
    username: str | None = None
    password: str | None = None
    verify_certs: bool = True
    index_prefix: str = "argus-"  # every index/alias/template name starts with it
    shards: int = 1
    replicas: int = 0
    refresh: str = "false"  # bulk refresh: "false" (production, 1 s refresh interval) or "wait_for" (tests)
    timeout_s: float = 30.0
    ef_search: int = 100  # HNSW ef_search at query time (k-NN method_parameters)


class SearchSettings(BaseModel):
    """Query-side knobs shared by the search backends."""

    hnsw_ef_search: int = 100  # pgvector hnsw.ef_search (recall@10 >= 0.95 measured, docs/search.md)
    flag_threshold: float = 0.5  # numeric flags (nsfw, disturbing) count as set at or above this
    query_embed_model: str = "efficientnet_lite0"  # default model for by-image / region search
    text_embed_model: str = "text_embed"  # MiniLM text-embedding model for semantic text search
    clip_model: str = "clip"  # cross-modal text->image, used only when loaded


class ClipSettings(BaseModel):
    """CLIP (open_clip) for cross-modal search + zero-shot heads (models/clip_zoo.py, docs/models.md).

    No weights ship with Argus and none come from a package registry: without ``weights`` or ``pretrained``
    the ``clip``/``clip_text`` models are unavailable (not loaded, processor not started), never random.
    """

    weights: Path | None = None  # an open_clip checkpoint file (.bin/.pt/.safetensors) for ``arch``
    pretrained: str | None = None  # an open_clip tag (e.g. "laion2b_s34b_b79k"): downloaded from the hub at pull
    # "ViT-B-32" (OpenAI BPE tokenizer, shipped with open_clip); "xlm-roberta-base-ViT-B-32" is the multilingual
    # choice, but its text tower config and tokenizer come from the Hugging Face hub (needs transformers + internet)
    arch: str = "ViT-B-32"
    disturbing_threshold: float = 0.5  # P(disturbing) at or above this raises the "disturbing" flag
    meme_threshold: float = 0.5  # P(meme) ... the "meme" flag
    action_threshold: float = 0.5  # the top Kinetics-400 action becomes a flag (a search label) at or above this
    action_top_k: int = 5  # action labels kept per image, best first


class CaptionSettings(BaseModel):
    """BLIP image captioning (model ``caption_blip``, models/caption.py, docs/models.md).

    No registry package ships BLIP weights: ``weights`` is a ``save_pretrained`` folder the operator downloaded
    where there is internet. Without it the model is unavailable (not loaded, processor not started), never random.
    """

    weights: Path | None = None  # folder: config.json, model.safetensors|pytorch_model.bin, tokenizer, preprocessor
    max_new_tokens: int = 30  # caption length cap (tokens), sent with each request
    num_beams: int = 3  # beam search width (1 = greedy, the cheapest on CPU)


class NddSettings(BaseModel):
    """Near-duplicate detection (retrieval/ndd, docs/ndd.md); thresholds calibrated by benchmarks/ndd_eval.py."""

    image_threshold: int = 31  # max PDQ Hamming distance (of 256 bits) between near-duplicate images
    frame_threshold: int = 48  # the same for two video frames (looser: a match also needs aligned frames)
    min_quality: int = 50  # video frames: PDQ quality (0..100) below this (black, uniform, fades) never vote
    image_min_quality: int = 20  # images below this are only ever exact duplicates (docs/ndd.md)
    dihedral: bool = True  # queries also try the 7 rotations/mirrors of the query image
    video_fps: float = 1.0  # frames hashed per second of video
    video_max_frames: int = 1200  # longer videos are sampled less often (bounded work and storage)
    video_min_frames: int = 3  # aligned matching frames needed for a video match
    video_min_share: float = 0.3  # ... covering at least this share of the shorter video's good frames
    index: str = "flat"  # faiss binary index: flat (exact, measured fastest at 1M) | mih
    refresh_interval_s: float = 1.0  # how often a query may check PostgreSQL for new hashes
    # the framing paths inside mode=near (docs/ndd.md "Paths"): content-region hashes and ORB keypoints with
    # geometric verification; thresholds calibrated on the dev split of benchmarks/ndd_eval.py and frozen here
    regions: bool = True  # also match the content area / embedded picture hashes (borders, screenshots)
    keypoints: bool = True  # keypoint candidates + RANSAC verification (crops, overlays, rotations, tilt)
    index_keypoints: int = 128  # ORB keypoints kept per indexed picture (4x4 grid)
    query_keypoints: int = 600  # ... per query picture
    keypoint_candidates: int = 12  # pictures verified per query (the most voted)
    keypoint_min_votes: int = 5  # query keypoints whose nearest descriptors point at a picture, to verify it
    min_inliers: int = 10  # RANSAC inliers of one similarity transform that make a near-duplicate
    min_inliers_homography: int = 20  # ... of one homography (perspective tilt; more freedom, more evidence)


class PeopleSettings(BaseModel):
    """Faces and people (docs/people.md); the thresholds are calibrated by benchmarks/people_eval.py."""

    enabled: bool = True  # global switch: False -> faces are stored as detections only, never recognised
    detector: str = "dlib"  # face boxes for the descriptors: dlib (HOG, in face_embed) | mtcnn (the face_mtcnn model)
    match_distance: float = 0.5  # a new face joins the person of its nearest face within this (dlib L2 distance)
    cluster_distance: float = 0.45  # re-clustering links two loose faces closer than this (Chinese whispers)
    min_face_px: float = 40.0  # faces smaller than this (canvas pixels) are detections only, never clustered
    min_sharpness: float = 20.0  # ... and so are blurred ones (variance of the aligned crop's Laplacian)
    recluster_every: int = 50  # the people sink re-clusters loose faces after this many new clusterable faces
    descriptors_in_events: bool = False  # True: the annotation events (subscribers) carry the raw descriptors


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ARGUS_", env_nested_delimiter="__", extra="ignore", frozen=False
    )

    state_dir: Path = Path(".argus")
    # downloads and tools that outlive a stack: registry packages fetched at pull time (npm tarballs),
    # the model-conversion venv (tensorflow + tf2onnx). Shared by every state_dir, tests included.
    cache_dir: Path = Field(default_factory=lambda: Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "argus")
    repo_root: Path = Path(__file__).resolve().parent.parent
    ports: Ports = Field(default_factory=Ports)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    # annotation models whose processors run; None -> the registry's defaults (models/registry.py). clip and
    # caption_blip need operator-supplied weights (ARGUS_CLIP__WEIGHTS, ARGUS_CAPTION__WEIGHTS) and nsfw_nudenet an
    # optional extra: without them they are reported unavailable and not started
    models: list[str] | None = None
    # extra Model classes ("package.module:Class") registered beside the built-in ones (models/registry.py)
    model_plugins: list[str] = Field(default_factory=list)
    ndd: NddSettings = Field(default_factory=NddSettings)
    search_backend: str = "postgres"
    opensearch: OpenSearchSettings = Field(default_factory=OpenSearchSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    caption: CaptionSettings = Field(default_factory=CaptionSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)
    api_keys: list[str] = Field(default_factory=lambda: ["dev-key"])
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    annotate: AnnotateSettings = Field(default_factory=AnnotateSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    feed: FeedSettings = Field(default_factory=FeedSettings)
    people: PeopleSettings = Field(default_factory=PeopleSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    ftp: FtpSettings = Field(default_factory=FtpSettings)

    # ---- resolved endpoints -------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap or f"127.0.0.1:{self.ports.kafka}"

    @property
    def s3_endpoint(self) -> str:
        return self.s3.endpoint or f"127.0.0.1:{self.ports.s3}"

    @property
    def postgres_dsn(self) -> str:
        if self.postgres.dsn:
            return self.postgres.dsn
        return (
            f"host=127.0.0.1 port={self.ports.postgres} user={self.postgres.user} "
            f"dbname={self.postgres.database}"
        )

    @property
    def triton_url(self) -> str:
        return self.triton.url or f"127.0.0.1:{self.ports.triton_http}"

    @property
    def triton_repo(self) -> Path:
        return self.repo_root / "triton_repo"

    @property
    def abs_state_dir(self) -> Path:  # not cached: a copy of the settings may be given another state_dir
        return self.state_dir.expanduser().resolve()

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}{name}"

    def consumer_group(self, name: str) -> str:
        """Consumer groups carry the topic prefix too: installations (or test modules) sharing one broker never
        share a group, so one's rebalance or stuck member cannot stall another's consumers."""
        return f"{self.kafka.topic_prefix}{name}"


SETTINGS_ENV = "ARGUS_SETTINGS_JSON"


def get_settings() -> Settings:
    """Settings from the environment; a supervisor hands its exact settings to children as JSON."""
    import os

    if raw := os.environ.get(SETTINGS_ENV):
        return Settings.model_validate_json(raw)
    return Settings()
