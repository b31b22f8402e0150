"""Object store access (S3 API through the official minio SDK): SeaweedFS embedded, MinIO/S3 in production."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from typing import BinaryIO

from minio import Minio
from minio.error import S3Error

from core.settings import Settings


class ObjectMissing(LookupError):
    pass


_MISSING = ("NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket")


class ObjectStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3.media_bucket
        self.client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3.access_key,
            secret_key=settings.s3.secret_key,
            secure=settings.s3.secure,
            region=settings.s3.region,
        )

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    @staticmethod
    def key_for(sha256: str) -> str:
        # content-addressed; the fan-out prefix keeps listings short
        return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise

    def put(self, key: str, stream: BinaryIO, length: int, content_type: str) -> None:
        self.client.put_object(self.bucket, key, stream, length, content_type=content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.put(key, io.BytesIO(data), len(data), content_type)

    def get(self, key: str, bucket: str | None = None, length: int | None = None) -> bytes:
        """The object's bytes (``length``: at most its first ``length`` bytes, a ranged GET)."""
        try:
            resp = self.client.get_object(bucket or self.bucket, key, length=length or 0)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket"):
                raise ObjectMissing(f"object {bucket or self.bucket}/{key} does not exist") from None
            raise
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def get_range(self, key: str, offset: int = 0, length: int = 0, bucket: str | None = None,
                  chunk: int = 256 * 1024) -> Iterator[bytes]:
        """Stream ``length`` bytes from ``offset`` (0: to the end) in chunks; ObjectMissing is raised before
        the first chunk, so a caller can still answer 404. The connection is released when the iterator ends
        or is closed."""
        try:
            resp = self.client.get_object(bucket or self.bucket, key, offset=offset, length=length)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectMissing(f"object {bucket or self.bucket}/{key} does not exist") from None
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from resp.stream(chunk)
            finally:
                resp.close()
                resp.release_conn()

        return chunks()

    def remove(self, key: str) -> None:
        """Delete one object; a missing object is not an error (a retried purge)."""
        try:
            self.client.remove_object(self.bucket, key)
        except S3Error as exc:
            if exc.code not in _MISSING:
                raise

    def remove_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many there were."""
        keys = [o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
                if o.object_name]
        for key in keys:
            self.remove(key)
        return len(keys)

    def copy(self, src: str, dst: str) -> None:
        from minio.commonconfig import CopySource

        self.client.copy_object(self.bucket, dst, CopySource(self.bucket, src))

    def presigned_url(self, key: str, filename: str | None = None) -> str:
        headers: dict[str, str | list[str] | tuple[str]] | None = (
            {"response-content-disposition": f'inline; filename="{filename}"'} if filename else None
        )
        return self.client.presigned_get_object(
            self.bucket,
            key,
            expires=timedelta(seconds=self.settings.s3.presign_expiry_s),
            response_headers=headers,
        )
