"""One settings object for every service, read from ARGUS_* environment variables.

Nested groups use ``__``: ``ARGUS_KAFKA__BOOTSTRAP=broker:9092``. Every endpoint defaults to the
embedded stack on 127.0.0.1 (ports from ``ports``); production points them at real clusters.
"""

from __future__ import annotations

from functools import cached_property
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
    # models the embedded server loads; None -> every model in Settings.models with a triton_repo folder
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
            "video/mp4",
            "video/quicktime",
            "video/webm",
            "video/x-matroska",
        ]
    )


class ProcessorSettings(BaseModel):
    instances: int = 1  # processes per model in the consumer group (<= partitions)
    infer_concurrency: int = 2  # a batch goes to Triton as this many parallel requests (one per instance)
    batch_size: int = 16
    batch_timeout_ms: int = 50
    retry_max_wait_s: float = 30.0  # backoff cap while Triton/S3 are unreachable (retried forever, never dropped)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ARGUS_", env_nested_delimiter="__", extra="ignore", frozen=False
    )

    state_dir: Path = Path(".argus")
    repo_root: Path = Path(__file__).resolve().parent.parent
    ports: Ports = Field(default_factory=Ports)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    # annotation models whose processors run (each: a processors/handlers entry; most also a triton_repo folder)
    models: list[str] = Field(default_factory=lambda: ["efficientnet_lite0"])
    search_backend: str = "postgres"
    api_keys: list[str] = Field(default_factory=lambda: ["dev-key"])

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
    def triton_models(self) -> list[str]:
        if self.triton.models is not None:
            return self.triton.models
        return [m for m in self.models if (self.triton_repo / m / "config.pbtxt").exists()]

    @property
    def triton_repo(self) -> Path:
        return self.repo_root / "triton_repo"

    @cached_property
    def abs_state_dir(self) -> Path:
        return self.state_dir.expanduser().resolve()

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}{name}"


SETTINGS_ENV = "ARGUS_SETTINGS_JSON"


def get_settings() -> Settings:
    """Settings from the environment; a supervisor hands its exact settings to children as JSON."""
    import os

    if raw := os.environ.get(SETTINGS_ENV):
        return Settings.model_validate_json(raw)
    return Settings()
