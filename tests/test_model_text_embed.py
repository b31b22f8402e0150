"""text_embed: the MiniLM export against torch and sentence-transformers, and the asset text it embeds;
semantic search through the pipeline in tests/test_suite_pipeline.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.settings import Settings
from models import store

REPO = Path(__file__).resolve().parent.parent


def test_minilm_onnx_matches_torch_and_sentence_transformers() -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from models import minilm

    store.pull(Settings(), "text_embed")
    tok = minilm.Tokenizer(REPO / "triton_repo" / "text_embed" / "tokenizer.json")
    texts = ["a red circle", "a crimson round disc", "stock market report", "word " * 400]
    ids, mask = tok(texts)
    assert ids.shape == (4, minilm.MAX_TOKENS) and ids[0, 0] == 101  # [CLS], truncated to 256
    onnx_path = REPO / "triton_repo" / "text_embed" / "1" / "model.onnx"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    emb = session.run(["EMBEDDING"], {"INPUT_IDS": ids, "ATTENTION_MASK": mask})[0]
    with torch.no_grad():
        ref = minilm.load_pretrained()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.abs(emb - ref).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # reference values of sentence-transformers' encode() for these pairs (notes/weights.md)
    assert abs(float(emb[0] @ emb[1]) - 0.399) < 0.005 and abs(float(emb[0] @ emb[2]) - 0.086) < 0.005
    # padding does not change a sentence's vector
    short_ids, short_mask = tok(texts[:1])
    alone = session.run(["EMBEDDING"], {"INPUT_IDS": short_ids, "ATTENTION_MASK": short_mask})[0]
    assert float(alone[0] @ emb[0]) > 0.99999


def test_search_fields_and_text_composition() -> None:
    from processors.text_embedder import compose, source_text
    from schemas.events import Box, Face, FaceDetection, OcrText, TextLine
    box = Box(x1=0, y1=0, x2=1, y2=1)
    faces = FaceDetection(face_count=2, faces=[Face(box=box, score=0.9)] * 2)
    ocr = OcrText(text="HELLO\nWORLD", lines=[TextLine(text="HELLO", score=1, box=box)])
    assert faces.search_fields().labels == ["face"] and faces.search_fields().numeric == {"face_count": 2.0}
    assert FaceDetection(face_count=0, faces=[]).search_fields().labels == []
    assert ocr.search_fields().text == "HELLO\nWORLD"
    doc = compose({"ocr_ppocr": source_text(ocr), "metadata": "Press conference", "face_mtcnn": source_text(faces)})
    assert doc.text == "Press conference. face. HELLO WORLD"
    assert doc.sources == ["metadata", "face_mtcnn", "ocr_ppocr"]


@pytest.mark.integration
def test_the_text_embedder_runs_on_the_shared_runtime(env: Settings) -> None:
    """Like every processor it serves /healthz, /readyz and /metrics (compose health-checks and Prometheus scrape
    it), embeds what arrives, and drains on SIGTERM with exit code 0."""
    import socket
    import time

    import httpx

    from argus.workers import Supervisor, Worker
    from core import db
    from producers.ingest import Ingestor, Metadata
    from tests.support.models import photo

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sup = Supervisor(env, [Worker("relay", ["run", "relay"]),
                           Worker("processor-text_embed", ["run", "processor", "text_embed"],
                                  extra_env={"ARGUS_OPS_PORT": str(port)})])  # the supervisor's per-worker port
    sup.start()
    base = f"http://127.0.0.1:{port}"
    try:
        buf = io.BytesIO()
        Image.fromarray(photo("coffee")).save(buf, "JPEG")
        asset = Ingestor(env).ingest_bytes(buf.getvalue(), Metadata(filename="c.jpg", title="Morning espresso"))
        deadline = time.monotonic() + 120
        while True:  # the upload's title alone gives the asset a text: one embedding
            with db.connect(env) as conn:
                if db.scalar(conn, "SELECT count(*) FROM asset_text_embedded WHERE asset_id=%s", (asset.asset_id,)):
                    break
            assert time.monotonic() < deadline and not sup.dead(), "the text embedder embedded nothing"
            time.sleep(0.5)
        assert httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        assert httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        text = httpx.get(f"{base}/metrics", timeout=2).text
        assert 'argus_ready{service="processor:text_embed"} 1.0' in text
        assert 'argus_events_out_total{service="processor:text_embed"' in text
    finally:
        sup.stop()
    proc = sup.workers["processor-text_embed"].proc
    assert proc is not None and proc.returncode == 0
