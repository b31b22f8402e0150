"""On-demand annotation over gRPC (api/grpc_service.py) and its REST mirror (api/annotate_routes.py), on the session's
real embedded stack: the same models and Triton as the pipeline, per-request status codes, health and reflection."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from api.app import create_app
from api.grpc_service import build_server
from api.proto import annotate_pb2, annotate_pb2_grpc
from argus.stack.ports import free_ports
from core import db
from core.auth import hash_key
from core.settings import Settings
from tests.support.modelrun import annotations, model_run
from tests.support.models import photo
from tests.support.stack import isolated_settings

pytestmark = pytest.mark.integration
KEY = "dev-key"  # the development key: every scope
READ_ONLY = "grpc-test-read-only-key"
MAX_BYTES = 2 * 1024 * 1024


def jpeg_of(name: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(name)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


ASTRONAUT = jpeg_of("astronaut")


class Files(BaseHTTPRequestHandler):
    """A tiny media server on 127.0.0.1 for the URL cases."""

    blobs: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.blobs.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def media_url() -> Iterator[str]:
    Files.blobs = {"/astronaut.jpg": ASTRONAUT, "/big.jpg": ASTRONAUT[:3] + b"\0" * (MAX_BYTES + 10)}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def serving(s: Settings) -> tuple[grpc.Server, grpc.Channel, annotate_pb2_grpc.AnnotatorStub]:
    server, port, _health, _svc = build_server(s, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return server, channel, annotate_pb2_grpc.AnnotatorStub(channel)


@pytest.fixture(scope="module")
def gsettings(stack_settings: Settings) -> Settings:
    s = isolated_settings(stack_settings, "t_grpc")
    s.annotate.max_bytes = MAX_BYTES
    s.security.api_key_hashes = [f"{hash_key(READ_ONLY)}:read"]
    return s


@pytest.fixture(scope="module")
def stub(gsettings: Settings) -> Iterator[tuple[annotate_pb2_grpc.AnnotatorStub, grpc.Channel]]:
    server, channel, st = serving(gsettings)
    yield st, channel
    channel.close()
    server.stop(None)


def call(stub: annotate_pb2_grpc.AnnotatorStub, key: str | None = KEY, timeout: float = 120,
         **req: Any) -> annotate_pb2.AnnotateResponse:
    md = (("x-api-key", key),) if key else ()
    return stub.Annotate(annotate_pb2.AnnotateRequest(**req), metadata=md, timeout=timeout)


def code_of(fn: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()  # type: ignore[attr-defined, no-any-return]


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal JSON trees, floats to 1e-4 (ORT may round differently in another batch shape)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-4), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_unary_equals_the_pipeline(stack_settings: Settings,
                                   stub: tuple[annotate_pb2_grpc.AnnotatorStub, grpc.Channel]) -> None:
    models = ["efficientnet_lite0", "face_mtcnn"]
    resp = call(stub[0], content=ASTRONAUT, models=models, filename="astronaut.jpg")
    assert [r.model for r in resp.results] == models
    assert resp.media_type == "image" and resp.content_type == "image/jpeg" and not resp.ingested
    got = {r.model: r for r in resp.results}
    assert json.loads(got["face_mtcnn"].payload_json)["face_count"] == 1
    with model_run(stack_settings, "t_grpc_pipeline", models, {"a": (ASTRONAUT, "astronaut.jpg")}) as (s, ids):
        assert ids["a"] == resp.asset_id  # the same asset id (sha256 of the content)
        for m in models:
            rows = annotations(s, resp.asset_id, m)
            assert len(rows) == 1
            assert rows[0]["model_version"] == got[m].model_version
            close(json.loads(got[m].payload_json), rows[0]["payload"], m)
            with db.connect(s) as conn:
                aid = conn.execute("SELECT annotation_id FROM annotations WHERE asset_id=%s AND model=%s",
                                   (resp.asset_id, m)).fetchone()["annotation_id"]
            assert aid == got[m].annotation_id


def test_stream_returns_each_model_as_it_finishes(
        stub: tuple[annotate_pb2_grpc.AnnotatorStub, grpc.Channel]) -> None:
    t0 = time.perf_counter()
    arrived: list[tuple[float, annotate_pb2.ModelResult]] = []
    call_ = stub[0].AnnotateStream(annotate_pb2.AnnotateRequest(
        content=ASTRONAUT, models=["face_mtcnn", "pdq", "efficientnet_lite0"]), metadata=(("x-api-key", KEY),),
        timeout=120)
    for r in call_:
        arrived.append((time.perf_counter() - t0, r))
    assert sorted(r.model for _, r in arrived) == ["efficientnet_lite0", "face_mtcnn", "pdq"]
    md = dict(call_.initial_metadata())
    assert md["x-media-type"] == "image" and len(md["x-asset-id"]) == 64
    # completion order: a fast model (pdq locally, or efficientnet_lite0: tens of ms) reached the client before the
    # slowest model (face_mtcnn) had even finished its own run, so results are not held back for the others
    slowest = max((r for _, r in arrived), key=lambda r: r.elapsed_ms)
    assert arrived[0][1].model != slowest.model
    assert arrived[0][0] * 1000 < slowest.elapsed_ms, (arrived[0][0], slowest.elapsed_ms)
    for _, r in arrived:
        assert json.loads(r.payload_json)["kind"]


def test_status_codes(gsettings: Settings, media_url: str,
                      stub: tuple[annotate_pb2_grpc.AnnotatorStub, grpc.Channel]) -> None:
    st = stub[0]
    ok = {"content": ASTRONAUT, "models": ["pdq"]}
    assert code_of(lambda: call(st, key=None, **ok)) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: call(st, key="wrong-key", **ok)) == grpc.StatusCode.UNAUTHENTICATED
    assert call(st, key=READ_ONLY, **ok).results[0].model == "pdq"  # read scope annotates
    assert code_of(lambda: call(st, key=READ_ONLY, ingest=True, **ok)) == grpc.StatusCode.PERMISSION_DENIED
    corrupt = ASTRONAUT[:200] + bytes(range(256)) * 20  # a JPEG header, then garbage
    assert code_of(lambda: call(st, content=corrupt, models=["efficientnet_lite0"])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: call(st, content=b"not media at all")) == grpc.StatusCode.INVALID_ARGUMENT
    too_big = ASTRONAUT + b"\0" * MAX_BYTES
    assert code_of(lambda: call(st, content=too_big, models=["pdq"])) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_of(lambda: call(st, content=ASTRONAUT, models=["nope"])) == grpc.StatusCode.NOT_FOUND
    # SSRF: 127.0.0.1 is not allowed unless allow-listed (feed.allow_networks)
    url = f"{media_url}/astronaut.jpg"
    assert code_of(lambda: call(st, url=url, models=["pdq"])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: call(st, url="file:///etc/passwd", models=["pdq"])) == grpc.StatusCode.INVALID_ARGUMENT
    # a deadline shorter than the work
    assert code_of(lambda: call(st, content=ASTRONAUT, models=["face_mtcnn"], timeout=0.01)
                   ) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_url_allow_listed_and_oversized(gsettings: Settings, media_url: str) -> None:
    s = gsettings.model_copy(deep=True)
    s.feed.allow_networks = ["127.0.0.0/8"]
    server, channel, st = serving(s)
    try:
        resp = call(st, url=f"{media_url}/astronaut.jpg", models=["pdq"])
        assert resp.size_bytes == len(ASTRONAUT) and resp.results[0].model == "pdq"
        assert code_of(lambda: call(st, url=f"{media_url}/big.jpg", models=["pdq"])
                       ) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert code_of(lambda: call(st, url=f"{media_url}/missing.jpg")) == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()
        server.stop(None)


def test_triton_down_is_unavailable(gsettings: Settings) -> None:
    s = gsettings.model_copy(deep=True)
    s.ports.triton_http = free_ports(1)[0]  # nothing listens there
    server, channel, st = serving(s)
    try:
        assert code_of(lambda: call(st, content=ASTRONAUT, models=["efficientnet_lite0"])
                       ) == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()
        server.stop(None)


def test_nothing_stored_unless_ingest(gsettings: Settings,
                                      stub: tuple[annotate_pb2_grpc.AnnotatorStub, grpc.Channel]) -> None:
    blob = jpeg_of("coffee")
    resp = call(stub[0], content=blob, models=["pdq"])
    with db.connect(gsettings) as conn:
        assert conn.execute("SELECT count(*) AS n FROM assets WHERE asset_id=%s", (resp.asset_id,)).fetchone()["n"] == 0
    resp = call(stub[0], content=blob, models=["pdq"], ingest=True, title="Coffee")
    assert resp.ingested
    with db.connect(gsettings) as conn:
        row = conn.execute("SELECT title, source FROM assets WHERE asset_id=%s", (resp.asset_id,)).fetchone()
        outbox = conn.execute("SELECT count(*) AS n FROM outbox WHERE key=%s", (resp.asset_id,)).fetchone()["n"]
    assert row["title"] == "Coffee" and row["source"] == "grpc" and outbox == 1


def test_health_and_reflection(stub: tuple[annotate_pb2_grpc.AnnotatorStub, grpc.Channel]) -> None:
    channel = stub[1]
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "argus.v1.Annotator"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"argus.v1.Annotator", "grpc.health.v1.Health"} <= names
    listed = stub[0].ListModels(annotate_pb2.ListModelsRequest(), metadata=(("x-api-key", KEY),), timeout=10)
    assert {"efficientnet_lite0", "face_mtcnn", "pdq"} <= {m.name for m in listed.models}
    assert "text_embed" not in {m.name for m in listed.models}  # it reads other models' text, not media


def test_rest_mirror(gsettings: Settings, stub: tuple[annotate_pb2_grpc.AnnotatorStub, grpc.Channel]) -> None:
    c = TestClient(create_app(gsettings))
    hdr = {"X-API-Key": KEY, "Content-Type": "application/octet-stream"}
    r = c.post("/v1/annotate?models=pdq,efficientnet_lite0", content=ASTRONAUT, headers=hdr)
    assert r.status_code == 200, r.text
    body = r.json()
    by_grpc = {x.model: json.loads(x.payload_json)
               for x in call(stub[0], content=ASTRONAUT, models=["pdq", "efficientnet_lite0"]).results}
    assert [x["model"] for x in body["results"]] == ["pdq", "efficientnet_lite0"]
    for x in body["results"]:
        close(x["payload"], by_grpc[x["model"]], x["model"])
    r = c.post("/v1/annotate", params={"models": "pdq"}, files={"file": ("a.jpg", ASTRONAUT)},
               headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["results"][0]["model"] == "pdq"
    with c.stream("POST", "/v1/annotate/stream?models=face_mtcnn&models=pdq", content=ASTRONAUT, headers=hdr) as s:
        assert s.status_code == 200 and s.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in s.iter_lines() if line]
    assert [x["event"] for x in lines] == ["asset", "result", "result", "end"]
    assert {x["model"] for x in lines[1:3]} == {"face_mtcnn", "pdq"}
    assert c.post("/v1/annotate?models=pdq", content=ASTRONAUT,
                  headers={"X-API-Key": "wrong", "Content-Type": "application/octet-stream"}).status_code == 401
    assert c.post("/v1/annotate?models=pdq", content=b"garbage", headers=hdr).status_code == 400
    assert c.post("/v1/annotate?models=pdq", content=ASTRONAUT + b"\0" * MAX_BYTES, headers=hdr).status_code == 413
    assert c.post("/v1/annotate?models=pdq&url=http://127.0.0.1:1/x.jpg", headers=hdr).status_code == 400
    assert c.post("/v1/annotate?models=pdq&ingest=true", content=ASTRONAUT,
                  headers={**hdr, "X-API-Key": READ_ONLY}).status_code == 403
