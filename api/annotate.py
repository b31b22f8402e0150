"""On-demand annotation: run the pipeline's models on one asset now and answer, storing nothing unless asked.

Shared by the gRPC service (api/grpc_service.py) and the REST mirror (api/annotate_routes.py). It is the
processor's path without Kafka: the same ``Model`` classes (``models.registry.get_model``), the same
``prepare -> infer -> to_payloads`` (+ ``summarize`` for a video's keyframes), the same Triton, the same
annotation ids. Differences, on purpose:

- Triton is asked once per request (no retry-forever): a client waiting on an answer gets UNAVAILABLE at once
  rather than a hang, and retries on its own terms;
- an asset given as a URL is fetched through the SSRF guard (core/netguard.py) under ``annotate.max_bytes``;
- nothing is written anywhere unless ``ingest`` is set, which goes through ``producers.ingest.Ingestor`` like any
  upload (the pipeline then annotates and stores it as usual).

Errors are ``AnnotateError`` with a code both transports map (gRPC status / HTTP status).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field

import numpy as np

from core import netguard
from core.imaging import MediaDecodeError
from core.settings import Settings
from core.storage import ObjectStore
from core.triton import TritonClient, _is_transient
from models.base import Item, Model
from models.registry import enabled_models, model_classes, unavailable_models
from producers.ingest import IngestError, Ingestor, Metadata, clean_filename, media_type_of, sniff_content_type
from schemas.events import AnnotationPayload, MediaUploaded
from schemas.events import annotation_id as make_annotation_id

# codes shared by both transports: gRPC status name -> HTTP status
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
               "RESOURCE_EXHAUSTED": 413, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "INTERNAL": 500}


class AnnotateError(Exception):
    """A request that cannot be answered; ``code`` is a gRPC status name (HTTP_STATUS maps it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TritonDown(RuntimeError):
    """Triton did not answer (connection refused, reset, not ready): UNAVAILABLE, never the input's fault."""


class _OnceTriton(TritonClient):
    """The shared Triton client, asked once: an on-demand caller is waiting, so no retry-forever loop."""

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        try:
            return self.infer_once(model, inputs, outputs)
        except Exception as exc:
            if _is_transient(exc):
                raise TritonDown(f"Triton unavailable for {model}: {exc}") from exc
            raise


@dataclass(frozen=True)
class Asset:
    data: bytes
    asset_id: str
    content_type: str
    media_type: str
    filename: str


@dataclass
class ModelResult:
    model: str
    model_version: str
    annotation_id: str
    payload: AnnotationPayload
    keyframes: list[tuple[int, AnnotationPayload]] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"model": self.model, "model_version": self.model_version, "annotation_id": self.annotation_id,
                "payload": self.payload.model_dump(mode="json"), "elapsed_ms": round(self.elapsed_ms, 2),
                "keyframes": [{"keyframe_ms": ms, "payload": p.model_dump(mode="json")} for ms, p in self.keyframes]}


@dataclass(frozen=True)
class Request:
    content: bytes | None = None
    url: str | None = None
    models: tuple[str, ...] = ()
    filename: str | None = None
    ingest: bool = False
    title: str | None = None
    description: str | None = None
    source: str = "annotate"


class Annotator:
    """One per server process; thread-safe (the Triton client keeps one connection per thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.triton = _OnceTriton(settings)
        self.pool = ThreadPoolExecutor(max_workers=max(1, settings.annotate.workers), thread_name_prefix="annotate")
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()
        self._http = netguard.guarded_client(settings)
        self._ingestor: Ingestor | None = None

    # -- what can run ---------------------------------------------------------------------------
    def available(self) -> list[Model]:
        """The active models that read media (text_embed reads other models' text; companions read nothing)."""
        names = enabled_models(self.settings)
        skip = unavailable_models(self.settings, names)
        classes = model_classes(self.settings)
        return [self.model(n) for n in names if n in classes and n not in skip and classes[n].consumes == "media"]

    def model(self, name: str) -> Model:
        with self._lock:
            if name not in self._models:
                self._models[name] = model_classes(self.settings)[name](self.settings)
            return self._models[name]

    def resolve(self, names: tuple[str, ...], media_type: str) -> list[Model]:
        active = {m.name: m for m in self.available()}
        if not names:
            chosen = [m for m in active.values() if media_type in m.media_types]
            if not chosen:
                raise AnnotateError("INVALID_ARGUMENT", f"no active model reads {media_type}")
            return chosen
        out = []
        for n in dict.fromkeys(names):
            if n not in active:
                raise AnnotateError("NOT_FOUND", f"model {n!r} is not active here; active: {', '.join(active)}")
            if media_type not in active[n].media_types:
                raise AnnotateError("INVALID_ARGUMENT", f"model {n!r} does not read {media_type}")
            out.append(active[n])
        return out

    # -- the asset -------------------------------------------------------------------------------
    def load(self, req: Request, deadline: float) -> Asset:
        cap = self.settings.annotate.max_bytes
        if (req.content is None) == (req.url is None):
            raise AnnotateError("INVALID_ARGUMENT", "give the asset as content bytes or as a url (exactly one)")
        if req.url is not None:
            data = self._fetch(req.url, cap, deadline)
        else:
            assert req.content is not None
            data = req.content
        if len(data) > cap:
            raise AnnotateError("RESOURCE_EXHAUSTED", f"asset is {len(data)} bytes; the limit is {cap}")
        if not data:
            raise AnnotateError("INVALID_ARGUMENT", "empty asset (0 bytes)")
        content_type = sniff_content_type(data[:64])
        if content_type is None or content_type not in self.settings.limits.allowed_types:
            raise AnnotateError("INVALID_ARGUMENT", "unsupported media: the content is not an allowed media type")
        name = req.filename or (req.url.rsplit("/", 1)[-1].split("?", 1)[0] if req.url else None)
        return Asset(data, hashlib.sha256(data).hexdigest(), content_type, media_type_of(content_type),
                     clean_filename(name))

    def _fetch(self, url: str, cap: int, deadline: float) -> bytes:
        budget = min(self.settings.annotate.fetch_timeout_s, max(0.1, deadline - time.monotonic()))
        try:
            got = netguard.fetch(self._http, url, cap, budget)
        except netguard.TooLarge as exc:
            raise AnnotateError("RESOURCE_EXHAUSTED", str(exc)) from None
        except (netguard.BlockedAddress, netguard.BadURL) as exc:
            raise AnnotateError("INVALID_ARGUMENT", f"url refused: {exc}") from None
        except netguard.FetchError as exc:
            raise AnnotateError("INVALID_ARGUMENT" if exc.permanent else "UNAVAILABLE", f"url fetch failed: {exc}"
                                ) from None
        if got.body is None:
            raise AnnotateError("INVALID_ARGUMENT", f"url answered {got.status} without a body")
        with got.body:
            return got.body.read()

    def event(self, asset: Asset, req: Request) -> MediaUploaded:
        """The upload event the pipeline would build for the same content (prepare() reads it)."""
        return MediaUploaded(event_id=f"upl-{asset.asset_id[:40]}", asset_id=asset.asset_id,
                             bucket=self.settings.s3.media_bucket, object_key=ObjectStore.key_for(asset.asset_id),
                             media_type=asset.media_type,  # type: ignore[arg-type]
                             content_type=asset.content_type, size_bytes=len(asset.data), filename=asset.filename,
                             title=req.title, description=req.description, source=req.source)

    # -- one model -------------------------------------------------------------------------------
    def run_model(self, model: Model, event: MediaUploaded, data: bytes) -> ModelResult:
        """prepare -> infer (<= max_batch rows a request) -> to_payloads, + the video summary: the processor's path."""
        t0 = time.perf_counter()
        try:
            items: list[Item] = model.prepare(event, data)
        except MediaDecodeError as exc:
            raise AnnotateError("INVALID_ARGUMENT", f"{model.name}: cannot decode the media: {exc}") from None
        if not items:
            raise AnnotateError("INVALID_ARGUMENT", f"{model.name}: nothing in the media to annotate")
        payloads: list[AnnotationPayload] = []
        for i in range(0, len(items), model.max_batch):
            chunk = items[i : i + model.max_batch]
            inputs = {n: np.stack([it.row[n] for it in chunk]) for n in chunk[0].row}
            try:
                outs = model.infer(self.triton, inputs)
            except TritonDown as exc:
                raise AnnotateError("UNAVAILABLE", str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - Triton rejected this input (the pipeline dead-letters it)
                raise AnnotateError("INVALID_ARGUMENT", f"{model.name}: the model rejected the input: {exc}"
                                    ) from None
            payloads += model.to_payloads(outs, len(chunk))
        version = model.model_version
        keyframes = [(it.keyframe_ms, p) for it, p in zip(items, payloads, strict=True) if it.keyframe_ms is not None]
        if keyframes:
            summary = model.summarize(keyframes)
            if summary is None:
                raise AnnotateError("INVALID_ARGUMENT", f"{model.name}: no summary for this video")
            payload = summary
        else:
            payload = payloads[0]
        return ModelResult(model.name, version, make_annotation_id(event.asset_id, model.name, version, None),
                           payload, keyframes, (time.perf_counter() - t0) * 1000)

    # -- a request ---------------------------------------------------------------------------------
    def begin(self, req: Request, deadline_s: float | None) -> tuple[Asset, list[Model], float]:
        """Load the asset and pick the models (raises AnnotateError); returns (asset, models, monotonic deadline)."""
        deadline = time.monotonic() + (deadline_s if deadline_s is not None
                                       else self.settings.annotate.default_deadline_s)
        asset = self.load(req, deadline)
        return asset, self.resolve(req.models, asset.media_type), deadline

    def stream(self, req: Request, asset: Asset, models: list[Model], deadline: float) -> Iterator[ModelResult]:
        """Each model's result as it finishes. The first failure ends the request (its code says why)."""
        event = self.event(asset, req)
        futures: dict[Future[ModelResult], str] = {self.pool.submit(self.run_model, m, event, asset.data): m.name
                                                   for m in models}
        pending = set(futures)
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AnnotateError("DEADLINE_EXCEEDED", f"deadline passed; not finished: "
                                        f"{', '.join(sorted(futures[f] for f in pending))}")
                done, pending = wait_futures(pending, timeout=left, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in pending:  # the client is gone or the deadline passed: drop what has not started
                f.cancel()

    def annotate(self, req: Request, asset: Asset, models: list[Model], deadline: float) -> list[ModelResult]:
        by_name = {r.model: r for r in self.stream(req, asset, models, deadline)}
        return [by_name[m.name] for m in models]

    def ingest(self, req: Request, asset: Asset) -> bool:
        """Annotate-and-ingest: store the asset like any upload (True when it is new in the archive)."""
        if self._ingestor is None:
            self._ingestor = Ingestor(self.settings)
        try:
            return self._ingestor.ingest_bytes(asset.data, Metadata(
                filename=asset.filename, title=req.title, description=req.description, source=req.source)).created
        except IngestError as exc:
            raise AnnotateError("RESOURCE_EXHAUSTED" if exc.status == 413 else "INVALID_ARGUMENT", str(exc)
                                ) from None
        except OSError as exc:
            raise AnnotateError("UNAVAILABLE", f"ingest failed: {exc}") from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
        self.triton.close()
