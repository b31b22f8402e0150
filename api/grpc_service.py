"""On-demand annotation over gRPC (api/proto/annotate.proto): ``Annotate``, ``AnnotateStream``, ``ListModels``,
with the standard health service (grpc.health.v1) and server reflection.

Auth: an API key in the ``x-api-key`` metadata (or ``authorization: Bearer <key>``), checked by the same key
store as the HTTP API (core/auth.py): the ``read`` scope annotates, ``ingest=true`` also needs ``upload``.
Deadlines: the client's deadline (or ``annotate.default_deadline_s``) bounds the fetch and the model runs.
Errors: the request's status code says why (docs/interfaces.md lists them). Bound to 127.0.0.1 by default
(``annotate.host``); run with ``argus run grpc``, a worker of ``argus serve``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from api.annotate import AnnotateError, Annotator, ModelResult, Request
from api.proto import annotate_pb2, annotate_pb2_grpc
from core import metrics
from core.auth import KeyStore, Principal
from core.settings import Settings

log = logging.getLogger(__name__)
SERVICE = annotate_pb2.DESCRIPTOR.services_by_name["Annotator"].full_name  # "argus.v1.Annotator"
# gRPC's own framing and the request's other fields on top of the asset's bytes
MESSAGE_OVERHEAD = 64 * 1024


def to_proto(r: ModelResult) -> annotate_pb2.ModelResult:
    return annotate_pb2.ModelResult(
        model=r.model, model_version=r.model_version, annotation_id=r.annotation_id,
        payload_json=r.payload.model_dump_json(), elapsed_ms=r.elapsed_ms,
        keyframes=[annotate_pb2.Keyframe(keyframe_ms=ms, payload_json=p.model_dump_json()) for ms, p in r.keyframes])


def from_proto(req: annotate_pb2.AnnotateRequest) -> Request:
    which = req.WhichOneof("asset")
    return Request(content=req.content if which == "content" else None, url=req.url if which == "url" else None,
                   models=tuple(req.models), filename=req.filename or None, ingest=req.ingest,
                   title=req.title or None, description=req.description or None, source="grpc")


class AnnotatorService(annotate_pb2_grpc.AnnotatorServicer):
    def __init__(self, settings: Settings, annotator: Annotator | None = None) -> None:
        self.settings = settings
        self.annotator = annotator or Annotator(settings)
        self.keys = KeyStore(settings)

    # -- shared per call ---------------------------------------------------------------------------
    def _auth(self, context: grpc.ServicerContext, scope: str) -> Principal:
        md = {k.lower(): v for k, v in context.invocation_metadata()}
        token = md.get("x-api-key")
        if token is None and str(md.get("authorization", "")).lower().startswith("bearer "):
            token = str(md["authorization"])[7:].strip()
        principal = self.keys.authenticate(str(token) if token is not None else None)
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key (metadata x-api-key)")
        assert principal is not None
        if not principal.allows(scope):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"this API key lacks the {scope!r} scope")
        return principal

    @staticmethod
    def _fail(context: grpc.ServicerContext, exc: AnnotateError, method: str) -> None:
        metrics.ANNOTATE_ERRORS.labels("grpc", exc.code).inc()
        log.info("%s: %s %s", method, exc.code, exc.message)
        context.abort(getattr(grpc.StatusCode, exc.code), exc.message)

    def _begin(self, request: annotate_pb2.AnnotateRequest, context: grpc.ServicerContext
               ) -> tuple[Request, Any, Any, float]:
        req = from_proto(request)
        self._auth(context, "upload" if req.ingest else "read")
        remaining = context.time_remaining()
        asset, models, deadline = self.annotator.begin(req, remaining)
        return req, asset, models, deadline

    # -- the RPCs ----------------------------------------------------------------------------------
    def Annotate(self, request: annotate_pb2.AnnotateRequest,  # noqa: N802 - the proto's name
                 context: grpc.ServicerContext) -> annotate_pb2.AnnotateResponse:
        t0 = time.perf_counter()
        try:
            req, asset, models, deadline = self._begin(request, context)
            results = self.annotator.annotate(req, asset, models, deadline)
            ingested = self.annotator.ingest(req, asset) if req.ingest else False
        except AnnotateError as exc:
            self._fail(context, exc, "Annotate")
            raise AssertionError("unreachable") from exc  # context.abort raises
        metrics.ANNOTATE_SECONDS.labels("grpc").observe(time.perf_counter() - t0)
        return annotate_pb2.AnnotateResponse(asset_id=asset.asset_id, media_type=asset.media_type,
                                             content_type=asset.content_type, size_bytes=len(asset.data),
                                             results=[to_proto(r) for r in results], ingested=ingested)

    def AnnotateStream(self, request: annotate_pb2.AnnotateRequest,  # noqa: N802 - the proto's name
                       context: grpc.ServicerContext) -> Iterator[annotate_pb2.ModelResult]:
        t0 = time.perf_counter()
        try:
            req, asset, models, deadline = self._begin(request, context)
            context.send_initial_metadata((("x-asset-id", asset.asset_id), ("x-media-type", asset.media_type)))
            for r in self.annotator.stream(req, asset, models, deadline):
                yield to_proto(r)
            if req.ingest:
                self.annotator.ingest(req, asset)
        except AnnotateError as exc:
            self._fail(context, exc, "AnnotateStream")
        metrics.ANNOTATE_SECONDS.labels("grpc").observe(time.perf_counter() - t0)

    def ListModels(self, request: annotate_pb2.ListModelsRequest,  # noqa: N802 - the proto's name
                   context: grpc.ServicerContext) -> annotate_pb2.ListModelsResponse:
        self._auth(context, "read")
        return annotate_pb2.ListModelsResponse(models=[
            annotate_pb2.ModelInfo(name=m.name, version=m.model_version, task=m.task,
                                   media_types=sorted(m.media_types)) for m in self.annotator.available()])


def build_server(settings: Settings, port: int | None = None, host: str | None = None
                 ) -> tuple[grpc.Server, int, health.HealthServicer, AnnotatorService]:
    """The server with the annotator, health and reflection added (not started); returns the bound port."""
    cap = settings.annotate.max_bytes + MESSAGE_OVERHEAD  # larger requests: RESOURCE_EXHAUSTED from gRPC itself
    server = grpc.server(ThreadPoolExecutor(max_workers=max(4, settings.annotate.workers)),
                         options=[("grpc.max_receive_message_length", cap),
                                  ("grpc.max_send_message_length", 64 * 1024 * 1024)])
    service = AnnotatorService(settings)
    annotate_pb2_grpc.add_AnnotatorServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    want = settings.ports.grpc if port is None else port
    bound = server.add_insecure_port(f"{host or settings.annotate.host}:{want}")
    if bound == 0:
        raise RuntimeError(f"cannot bind the gRPC port {want}")
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer, service


def serve(settings: Settings) -> None:
    """``argus run grpc``: serve until SIGTERM/SIGINT, then stop taking calls and let running ones finish."""
    server, port, health_servicer, service = build_server(settings)
    ops = metrics.Health("grpc")
    metrics.start_ops_server(settings, ops)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    ops.set_ready(True, "serving")
    log.info("gRPC annotation service on %s:%d", settings.annotate.host, port)
    while not stop.wait(5.0):
        ops.beat()
    ops.stopping = True
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=settings.service.drain_timeout_s).wait()
    service.annotator.close()
