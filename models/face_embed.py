"""Face descriptors (dlib ResNet, 128-d) on Triton: boxes, quality and one descriptor per face; people follow.

Each image or keyframe is letterboxed onto a 640 canvas (as for ``face_mtcnn``). The boxes come from dlib's HOG
detector inside the Triton model (the default, ``people.detector="dlib"``: measured better for the 5-point
alignment, docs/people.md) or from the ``face_mtcnn`` model (``people.detector="mtcnn"``: one more Triton call).
``triton_repo/face_embed/1/model.py`` aligns a crop on the 5 landmarks and computes the descriptor.

Privacy: a descriptor is biometric data. It is stored content-addressed in the object store (``faces/<sha256>``)
and the event carries only that reference, unless ``people.descriptors_in_events`` is set; the people sink
(sinks/people_sink.py) reads it from there, and forgetting a person deletes those objects.
"""

from __future__ import annotations

import hashlib
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from core.packages import find_package_dir, package_dir
from core.storage import ObjectStore
from core.triton import TritonClient
from models.base import CheckResult
from models.frames import Letterboxed, box_of, letterbox
from models.probes import photo, triton_infer
from schemas.events import AnnotationPayload, DescribedFace, FaceDescriptors

CANVAS = 640
MAX_FACES = 32
DIM = 128
PREDICTOR = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
OUTPUTS = ["BOXES_OUT", "SCORES_OUT", "DESCRIPTORS", "SIZE_PX", "SHARPNESS", "FACES"]


def descriptor_key(ref: str) -> str:
    """Object key of a descriptor (float32 bytes) by its sha256."""
    return f"faces/{ref[:2]}/{ref}"


def descriptor_ref(vec: np.ndarray) -> tuple[str, bytes]:
    data = np.ascontiguousarray(vec, dtype="<f4").tobytes()
    return hashlib.sha256(data).hexdigest(), data


def descriptor_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


class FaceEmbed(Letterboxed):
    name = "face_embed"
    cpu_cost_ms = 300  # docs/people.md throughput
    task = "face recognition (descriptors)"
    version = "dlib-resnet-v1-55533b28"  # prefix of the ResNet .dat's sha256
    source_package = "face_recognition_models"
    source_version = "0.3.0"
    licence = "CC0-1.0 (weights); dlib Boost Software License"
    outputs = OUTPUTS
    artifact = RESNET
    build_params = {"files": [RESNET, PREDICTOR], "revision": 1}
    canvas = CANVAS
    max_batch = 8
    max_keyframes = 8

    def unavailable(self) -> str | None:
        if find_package_dir("dlib") is None and find_package_dir("_dlib_pybind11") is None:
            try:
                import dlib  # noqa: F401  # lazy: only to tell whether the extra is there
            except ImportError:
                return "dlib is not installed (pip install dlib-bin==20.0.1.post1; scripts/bootstrap.sh)"
        if find_package_dir("face_recognition_models") is None:
            return "face_recognition_models is not installed (scripts/bootstrap.sh)"
        return None

    # ---- pull / verify ---------------------------------------------------------------------------
    def weights(self) -> Path:
        found = package_dir("face_recognition_models",
                            "face_recognition_models is not installed (scripts/bootstrap.sh)")
        return found / "models" / RESNET

    def build(self, dst: Path) -> None:
        """The two weight files as shipped (dlib reads them directly); the 68-point predictor is never used."""
        src = self.weights()
        shutil.copyfile(src, dst)
        shutil.copyfile(src.parent / PREDICTOR, dst.parent / PREDICTOR)

    def check(self, client: Any) -> CheckResult:
        found = {}
        for name in ("astronaut", "chelsea"):
            arr, size = letterbox(photo(name), CANVAS)
            out = triton_infer(client, self.name, {"IMAGE": arr[None], "SIZE": size[None]}, OUTPUTS)
            found[name] = (int(out["FACES"][0, 0]), out["DESCRIPTORS"][0, 0])
        # the same face, mirrored: dlib's descriptor should stay well within the same-person distance
        arr, size = letterbox(photo("astronaut").transpose(Image.Transpose.FLIP_LEFT_RIGHT), CANVAS)
        mirrored = triton_infer(client, self.name, {"IMAGE": arr[None], "SIZE": size[None]}, OUTPUTS)
        dist = float(np.linalg.norm(mirrored["DESCRIPTORS"][0, 0] - found["astronaut"][1]))
        ok = found["astronaut"][0] == 1 and found["chelsea"][0] == 0 and dist < 0.4
        return CheckResult(ok, f"astronaut: {found['astronaut'][0]} face(s), mirrored distance {dist:.3f}; "
                               f"cat photo: {found['chelsea'][0]} face(s)")

    # ---- the processor ---------------------------------------------------------------------------
    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {"IMAGE": inputs["IMAGE"], "SIZE": inputs["SIZE"]}
        if self.settings.people.detector == "mtcnn":
            det = triton.infer("face_mtcnn", feed, ["BOXES", "SCORES", "COUNT"])
            feed |= {"BOXES": np.ascontiguousarray(det["BOXES"][:, :MAX_FACES]),
                     "SCORES": np.ascontiguousarray(det["SCORES"][:, :MAX_FACES]),
                     "COUNT": np.minimum(det["COUNT"], MAX_FACES).astype(np.int32)}
        return triton.infer(self.name, feed, self.outputs)

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(self.settings)

    @retry(retry=retry_if_exception_type(OSError), wait=wait_exponential(0.2, max=10), stop=stop_after_attempt(8),
           reraise=True)
    def _put(self, key: str, data: bytes) -> None:
        self.store.put_bytes(key, data, "application/octet-stream")

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        cfg = self.settings.people
        result: list[AnnotationPayload] = []
        for i in range(n):
            faces = []
            for j in range(int(outputs["FACES"][i, 0])):
                size_px, sharp = float(outputs["SIZE_PX"][i, j]), float(outputs["SHARPNESS"][i, j])
                recognisable = size_px >= cfg.min_face_px and sharp >= cfg.min_sharpness
                ref = vec = None
                if recognisable:
                    ref, data = descriptor_ref(outputs["DESCRIPTORS"][i, j])
                    self._put(descriptor_key(ref), data)  # content-addressed: a re-run rewrites the same object
                    if cfg.descriptors_in_events:
                        vec = [round(float(x), 6) for x in outputs["DESCRIPTORS"][i, j]]
                faces.append(DescribedFace(
                    box=box_of(outputs["BOXES_OUT"][i, j]), score=round(float(outputs["SCORES_OUT"][i, j]), 5),
                    size_px=round(size_px, 1), sharpness=round(sharp, 1), recognisable=recognisable,
                    descriptor_ref=ref, descriptor=vec))
            result.append(FaceDescriptors(detector=cfg.detector, face_count=len(faces), faces=faces))
        return result
