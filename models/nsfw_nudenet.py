"""NSFW moderation with NudeNet 3.4 (``nsfw_nudenet``): body-part regions per image or keyframe, and an nsfw flag.

Weights: PyPI ``nudenet==3.4.2`` ships ``nudenet/320n.onnx``, an Ultralytics YOLOv8n detector (320x320
input, 18 body-part classes, ``LABELS``). The wheel's METADATA says MIT but its bundled LICENSE text is
AGPL-3.0 (and the ONNX metadata says "AGPL-3.0 License (https://ultralytics.com/license)"), so it is an
OPTIONAL extra: ``pip install --no-deps nudenet==3.4.2`` (its declared deps would pull non-headless opencv;
nothing of the package is imported here, only the ``.onnx`` file is read). Without it ``unavailable``
says so and the model is skipped by pull/Triton/processors.

Build (``build``): graph surgery with ``onnx.helper``: the Triton-facing graph takes
``IMAGE`` uint8 [N,320,320,3] (RGB, letterboxed top-left by the client, ``frames.letterbox``) and does
Cast -> /255 -> Transpose(NCHW) in-graph before the original network; its output ``RAW`` float32
[N,22,2100] is the unchanged YOLOv8 head: per anchor (40x40 + 20x20 + 10x10 = 2100) the box centre x, y,
width, height in canvas pixels, then 18 class scores (already sigmoid). The batch axis of the original
graph is dynamic, so the wrapped graph batches.

Decoding (``decode``, numpy, run by the processor): per anchor the best class and its score (as NudeNet
does); anchors scoring >= ``REGION_THRESHOLD`` become boxes, clipped to the letterboxed content and
normalised to it (0..1 of the original frame); per-class NMS at IoU ``IOU_THRESHOLD``. NudeNet's own
``detect()`` uses the same 0.25 score / 0.45 IoU, but class-agnostic NMS; per-class NMS keeps e.g. a face
inside a larger exposed region. ``nsfw_score`` is the highest score of an ``EXPLICIT`` region (exposed
breast/genitalia/buttocks/anus): covered parts, faces, feet, belly, armpits and male chest never count.

The processor: ``nsfw = nsfw_score >= threshold``. The default 0.5 equals ``search.flag_threshold``, the cut
the search filter applies to the same score (``nsfw=exclude|only``), so the stored flag and the search
filter agree; it is also well above the 0.25 region threshold: on the sample photos the strongest
explicit-class false region is ~0.35 (a coffee cup as BUTTOCKS_EXPOSED), reported as a region but not flagged.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.packages import package_dir
from models.base import CheckResult
from models.frames import Detection, LetterboxedDetector, box_of, iou, letterbox
from models.probes import photo, triton_infer
from schemas.events import AnnotationPayload, DetectedObject, NsfwDetection

PACKAGE = "nudenet"
PACKAGE_VERSION = "3.4.2"
WEIGHTS_FILE = "320n.onnx"
SIZE = 320  # network input (config.pbtxt IMAGE dims)
ANCHORS = 2100  # 40*40 + 20*20 + 10*10 (strides 8, 16, 32)
# class-index order of nudenet/nudenet.py (``__labels``) == the ONNX metadata ``names``
LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
# the regions that make an image NSFW (the "explicit" set); MALE_BREAST_EXPOSED is deliberately not in it
EXPLICIT: frozenset[str] = frozenset({
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
})
EXPLICIT_IDS = np.array([i for i, n in enumerate(LABELS) if n in EXPLICIT], dtype=np.int64)
REGION_THRESHOLD = 0.25  # a region is reported at or above this score (NudeNet's detect() uses 0.25 too)
IOU_THRESHOLD = 0.45  # NMS overlap (NudeNet's detect() value)
NSFW_THRESHOLD = 0.5  # nsfw = nsfw_score >= this; equals search.flag_threshold, the search filter's cut
MAX_REGIONS = 50
INSTALL_HINT = (f"optional extra not installed: pip install --no-deps {PACKAGE}=={PACKAGE_VERSION} "
                "(AGPL-3.0 licence text, see docs/models.md)")


# ---- build -------------------------------------------------------------------------------------------


def wrap(model: Any) -> Any:
    """The Triton-facing graph around NudeNet's ``onnx.ModelProto`` (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    (src_in,) = graph.input
    (src_out,) = graph.output
    batch = src_in.type.tensor_type.shape.dim[0]
    if not batch.dim_param:  # a fixed batch of 1 would need a loop in 1/model.py instead
        raise ValueError(f"{WEIGHTS_FILE}: expected a dynamic batch axis, got {batch.dim_value}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    pre = [
        helper.make_node("Cast", ["IMAGE"], ["argus_pre/float"], to=TensorProto.FLOAT, name="argus_pre/cast"),
        helper.make_node("Div", ["argus_pre/float", "argus_pre/255"], ["argus_pre/scaled"], name="argus_pre/div"),
        helper.make_node("Transpose", ["argus_pre/scaled"], [src_in.name], perm=[0, 3, 1, 2],
                         name="argus_pre/nchw"),
    ]
    g.initializer.append(helper.make_tensor("argus_pre/255", TensorProto.FLOAT, [], [255.0]))
    nodes = pre + list(g.node)
    for node in nodes:  # the head's output becomes RAW
        for i, name in enumerate(node.output):
            if name == src_out.name:
                node.output[i] = "RAW"
        for i, name in enumerate(node.input):
            if name == src_out.name:
                node.input[i] = "RAW"
    del g.node[:]
    g.node.extend(nodes)
    del g.input[:]
    g.input.append(helper.make_tensor_value_info("IMAGE", TensorProto.UINT8, ["batch", SIZE, SIZE, 3]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("RAW", TensorProto.FLOAT, ["batch", 4 + len(LABELS), ANCHORS]))
    g.name = "nsfw_nudenet"
    note = "IMAGE uint8 NHWC RGB letterboxed -> RAW [N,22,2100] (models/nudenet.py)"
    helper.set_model_props(out, {**{p.key: p.value for p in model.metadata_props}, "argus": note})
    onnx.checker.check_model(out, full_check=True)
    return out


def class_names(model: Any) -> list[str]:
    """The class names the Ultralytics export recorded in the ONNX metadata (``names``), in index order."""
    import ast

    names = ast.literal_eval({p.key: p.value for p in model.metadata_props}.get("names", "{}"))
    return [names[i] for i in sorted(names)]


# ---- decoding ----------------------------------------------------------------------------------------


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per-class greedy NMS -> kept indices, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for cls in np.unique(classes):
        idx = order[classes[order] == cls]
        while idx.size:
            best, rest = idx[0], idx[1:]
            keep.append(int(best))
            idx = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.array(sorted(keep, key=lambda i: (-scores[i], i)), dtype=np.int64)


def decode(raw: np.ndarray, content: np.ndarray | tuple[float, float], region_threshold: float = REGION_THRESHOLD,
           iou_threshold: float = IOU_THRESHOLD, max_regions: int = MAX_REGIONS) -> list[Detection]:
    """One image's ``RAW`` [22,2100] -> regions, best first. ``content`` = (width, height) of the image
    inside the 320x320 canvas (``frames.letterbox``'s second value); boxes are clipped to it and
    normalised by it."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.shape != (4 + len(LABELS), raw.shape[1]):
        raise ValueError(f"RAW must be [{4 + len(LABELS)}, anchors], got {list(raw.shape)}")
    w, h = float(content[0]), float(content[1])
    scores_all = raw[4:]
    classes = np.argmax(scores_all, axis=0)
    scores = scores_all[classes, np.arange(raw.shape[1])]
    sel = np.flatnonzero(scores >= region_threshold)
    if sel.size == 0 or w <= 0 or h <= 0:
        return []
    cx, cy, bw, bh = raw[0, sel], raw[1, sel], raw[2, sel], raw[3, sel]
    boxes = np.stack([(cx - bw / 2) / w, (cy - bh / 2) / h, (cx + bw / 2) / w, (cy + bh / 2) / h], axis=1)
    boxes = np.clip(boxes, 0.0, 1.0)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # nothing left inside the content
    boxes, scores, classes = boxes[valid], scores[sel][valid], classes[sel][valid]
    keep = nms(boxes, scores, classes, iou_threshold)[:max_regions]
    return [Detection(int(classes[i]), LABELS[int(classes[i])], float(scores[i]),
                   (float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])))
            for i in keep]


def nsfw_score(regions: list[Detection]) -> float:
    """Highest score of an explicit (exposed) region; 0.0 when there is none."""
    return max((r.score for r in regions if r.label in EXPLICIT), default=0.0)


# ---- check through Triton ----------------------------------------------------------------------------


class NsfwNudenet(LetterboxedDetector):
    name = "nsfw_nudenet"
    cpu_cost_ms = 40  # docs/models.md throughput
    task = "nsfw-moderation"
    version = "nudenet-c15d8273"  # prefix of 320n.onnx's sha256
    source_package = PACKAGE
    source_version = PACKAGE_VERSION
    licence = "AGPL-3.0 (bundled licence text; METADATA says MIT)"
    build_params = {"wrap": "IMAGE uint8 NHWC -> /255 NCHW -> 320n.onnx -> RAW", "revision": 1}
    canvas = SIZE
    outputs = ["RAW"]
    max_batch = 16
    max_keyframes = 8  # ~50 ms per frame on one CPU core; 8 keyframes cover a video's scenes
    threshold: ClassVar[float] = NSFW_THRESHOLD  # nsfw = nsfw_score >= threshold
    region_threshold: ClassVar[float] = REGION_THRESHOLD
    iou_threshold: ClassVar[float] = IOU_THRESHOLD

    # ---- pull / verify ---------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        """Why ``nsfw_nudenet`` cannot be pulled here (the optional package is missing), or None."""
        if importlib.util.find_spec(PACKAGE) is None:
            return INSTALL_HINT
        return None

    def weights(self) -> Path:
        path = package_dir(PACKAGE, INSTALL_HINT) / WEIGHTS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; reinstall {PACKAGE}=={PACKAGE_VERSION}")
        return path

    def build(self, dst: Path) -> None:
        import onnx

        src = onnx.load(str(self.weights()))
        if class_names(src) != list(LABELS):
            raise ValueError(f"{WEIGHTS_FILE}: class names differ from LABELS")
        onnx.save(wrap(src), str(dst))

    def check(self, client: Any) -> CheckResult:
        """Astronaut -> a FACE_FEMALE region and not NSFW; the cat -> no region."""
        found: dict[str, list[Detection]] = {}
        for name in ("astronaut", "chelsea"):
            canvas, size = letterbox(photo(name), SIZE)
            raw = triton_infer(client, self.name, {"IMAGE": canvas[None]}, ["RAW"])["RAW"]
            found[name] = decode(raw[0], size)
        astro, cat = found["astronaut"], found["chelsea"]
        face = max((r.score for r in astro if r.label == "FACE_FEMALE"), default=0.0)
        score = nsfw_score(astro)
        ok = face >= 0.5 and score < NSFW_THRESHOLD and not cat
        shown = ", ".join(f"{r.label} {r.score:.2f}" for r in astro) or "nothing"
        return CheckResult(ok, f"astronaut: {shown} (nsfw={score >= NSFW_THRESHOLD}, score {score:.2f}); "
                               f"cat photo: {len(cat)} region(s)")

    # ---- the processor ---------------------------------------------------------------------------
    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return [self.payload(outputs["RAW"][i], outputs["SIZE"][i]) for i in range(n)]

    def payload(self, raw: np.ndarray, size: np.ndarray) -> NsfwDetection:
        """One image's RAW [22,2100] + its content (width, height) in the canvas -> the annotation."""
        regions = decode(raw, size, self.region_threshold, self.iou_threshold)
        score = round(min(1.0, max(0.0, nsfw_score(regions))), 5)
        objects = [
            DetectedObject(label=r.label, class_id=r.class_id, score=round(min(1.0, max(0.0, r.score)), 5),
                           box=box_of(r.box))
            for r in regions
        ]
        return NsfwDetection(nsfw=score >= self.threshold, nsfw_score=score, threshold=self.threshold,
                             regions=objects)
