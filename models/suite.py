"""Weights, builds and Triton checks of the annotation suite (faces, OCR, text embedding).

Each model's ``ModelSpec`` in ``registry.SPECS`` points here. A check sends a known input through
Triton and states what came back: astronaut -> exactly one face and the cat -> none; rendered text
read back; related sentences closer than unrelated ones.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.packages import package_dir

if TYPE_CHECKING:
    from core.settings import Settings
    from models.registry import CheckResult, ModelSpec

FACE_SIZE = 640  # face_mtcnn canvas (config.pbtxt IMAGE dims)
OCR_SIZE = 960  # ocr_ppocr canvas
OCR_PROBE = ("HELLO WORLD 2024", "Media asset search")


def _site(package: str) -> Path:
    return package_dir(package, f"package {package!r} is not installed (see pyproject.toml / scripts/bootstrap.sh)")


def letterbox(img: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    from models.frames import letterbox as _lb

    return _lb(img, size)


def _infer(client: Any, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    req = []
    for name, arr in inputs.items():
        inp = httpclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        inp.set_data_from_numpy(arr)
        req.append(inp)
    res = client.infer(model, req, outputs=[httpclient.InferRequestedOutput(o) for o in outputs])
    return {o: res.as_numpy(o) for o in outputs}


def photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


# ---- face_mtcnn ------------------------------------------------------------------------------------
def mtcnn_weights(settings: Settings | None = None) -> Path:
    return _site("facenet_pytorch") / "data" / "onet.pt"


def mtcnn_build(dst: Path) -> None:
    """pnet/rnet/onet state dicts from the facenet-pytorch wheel, in one file (no facenet import:
    the package itself imports torchvision, which does not load beside this torch)."""
    import torch

    data = mtcnn_weights().parent
    state = {n: torch.load(data / f"{n}.pt", map_location="cpu", weights_only=True) for n in ("pnet", "rnet", "onet")}
    torch.save(state, dst)


def mtcnn_check(client: Any, spec: ModelSpec, model_dir: Path) -> CheckResult:
    from models.registry import CheckResult

    counts = {}
    for name in ("astronaut", "chelsea"):
        arr, size = letterbox(photo(name), FACE_SIZE)
        out = _infer(client, spec.name, {"IMAGE": arr[None], "SIZE": size[None]}, list(spec.outputs))
        counts[name] = (int(out["COUNT"][0, 0]), float(out["SCORES"][0, 0]))
    ok = counts["astronaut"][0] == 1 and counts["astronaut"][1] > 0.9 and counts["chelsea"][0] == 0
    return CheckResult(ok, f"astronaut: {counts['astronaut'][0]} face(s) (p={counts['astronaut'][1]:.3f}); "
                           f"cat photo: {counts['chelsea'][0]} face(s)")


# ---- ocr_ppocr -------------------------------------------------------------------------------------
_PPOCR_FILES = {
    "det.onnx": "ch_PP-OCRv4_det_infer.onnx",
    "cls.onnx": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "rec.onnx": "ch_PP-OCRv4_rec_infer.onnx",
}


def ppocr_weights(settings: Settings | None = None) -> Path:
    return _site("rapidocr_onnxruntime") / "models" / _PPOCR_FILES["rec.onnx"]


def ppocr_build(dst: Path) -> None:
    """The three PP-OCRv4 graphs in one stored (uncompressed) zip, with fixed timestamps: the same
    wheel always gives the same artifact bytes."""
    models = ppocr_weights().parent
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zf:
        for arcname, src in _PPOCR_FILES.items():
            info = zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0))
            zf.writestr(info, (models / src).read_bytes())


def rendered_text(lines: tuple[str, ...] = OCR_PROBE, size: tuple[int, int] = (720, 260)) -> Image.Image:
    """Black text on white, drawn with Pillow's built-in scalable font (no font files needed)."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=48)
    for i, line in enumerate(lines):
        draw.text((30, 40 + 90 * i), line, fill="black", font=font)
    return img


def squash(text: str) -> str:
    """Compare OCR output without spaces and case (PP-OCR sometimes drops the space between words)."""
    return "".join(text.split()).lower()


def ppocr_check(client: Any, spec: ModelSpec, model_dir: Path) -> CheckResult:
    from models.registry import CheckResult

    arr, size = letterbox(rendered_text(), OCR_SIZE)
    out = _infer(client, spec.name, {"IMAGE": arr[None], "SIZE": size[None]}, list(spec.outputs))
    n = int(out["COUNT"][0, 0])
    lines = [t.decode() for t in out["TEXT"][0, :n]]
    got = squash(" ".join(lines))
    ok = all(squash(line) in got for line in OCR_PROBE)
    return CheckResult(ok, f"rendered {list(OCR_PROBE)} read back as {lines}")


# ---- text_embed ------------------------------------------------------------------------------------
def minilm_weights(settings: Settings | None = None) -> Path:
    from models.minilm import weights_path

    return weights_path()


def minilm_build(dst: Path) -> None:
    from models.minilm import export_onnx

    export_onnx(dst, opset=17)


def minilm_check(client: Any, spec: ModelSpec, model_dir: Path) -> CheckResult:
    from models.minilm import Tokenizer
    from models.registry import CheckResult

    texts = ["a red circle", "a crimson round disc", "stock market report"]
    ids, mask = Tokenizer(model_dir / "tokenizer.json")(texts)
    emb = _infer(client, spec.name, {"INPUT_IDS": ids, "ATTENTION_MASK": mask}, ["EMBEDDING"])["EMBEDDING"]
    related, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    norms = np.linalg.norm(emb, axis=1)
    # sentence-transformers gives 0.399 and 0.086 for these pairs (measured, notes/weights.md)
    ok = abs(related - 0.399) < 0.01 and abs(unrelated - 0.086) < 0.01 and bool(np.all(np.abs(norms - 1) < 1e-3))
    return CheckResult(ok, f"cos(red circle, crimson disc)={related:.3f}, cos(red circle, stock market)="
                           f"{unrelated:.3f}; dim {emb.shape[1]}")


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
