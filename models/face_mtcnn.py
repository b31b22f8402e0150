"""Faces (MTCNN on Triton): boxes + scores per image or keyframe; ``face_count`` is a search facet.

Weights: the pnet/rnet/onet state dicts of PyPI ``facenet-pytorch``, packed into one file by ``build``;
``triton_repo/face_mtcnn/1/model.py`` runs the three-stage cascade.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.packages import package_dir
from models.base import CheckResult
from models.frames import Letterboxed, box_of, letterbox
from models.probes import photo, triton_infer
from schemas.events import AnnotationPayload, Face, FaceDetection

FACE_SIZE = 640  # the canvas (config.pbtxt IMAGE dims)


class FaceMtcnn(Letterboxed):
    name = "face_mtcnn"
    cpu_cost_ms = 300  # docs/models.md throughput
    task = "face-detection"
    version = "mtcnn-165bfbe4"  # prefix of onet.pt's sha256
    source_package = "facenet-pytorch"
    source_version = "2.6.0"
    licence = "MIT"
    outputs = ["BOXES", "SCORES", "COUNT"]
    artifact = "mtcnn.pt"
    build_params = {"format": "torch.save({pnet,rnet,onet} state dicts)", "revision": 1}
    canvas = FACE_SIZE
    max_batch = 16
    max_keyframes = 12  # ~0.1-0.3 s per frame on one CPU core

    # ---- pull / verify ---------------------------------------------------------------------------
    def weights(self) -> Path:
        found = package_dir("facenet_pytorch", "facenet-pytorch is not installed (scripts/bootstrap.sh)")
        return found / "data" / "onet.pt"

    def build(self, dst: Path) -> None:
        """pnet/rnet/onet state dicts from the facenet-pytorch wheel, in one file (no facenet import:
        the package itself imports torchvision, which does not load beside this torch)."""
        import torch  # lazy: heavy, needed only to pull

        data = self.weights().parent
        state = {n: torch.load(data / f"{n}.pt", map_location="cpu", weights_only=True)
                 for n in ("pnet", "rnet", "onet")}
        torch.save(state, dst)

    def check(self, client: Any) -> CheckResult:
        counts = {}
        for name in ("astronaut", "chelsea"):
            arr, size = letterbox(photo(name), FACE_SIZE)
            out = triton_infer(client, self.name, {"IMAGE": arr[None], "SIZE": size[None]}, self.outputs)
            counts[name] = (int(out["COUNT"][0, 0]), float(out["SCORES"][0, 0]))
        ok = counts["astronaut"][0] == 1 and counts["astronaut"][1] > 0.9 and counts["chelsea"][0] == 0
        return CheckResult(ok, f"astronaut: {counts['astronaut'][0]} face(s) (p={counts['astronaut'][1]:.3f}); "
                               f"cat photo: {counts['chelsea'][0]} face(s)")

    # ---- the processor ---------------------------------------------------------------------------
    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        result: list[AnnotationPayload] = []
        for i in range(n):
            k = int(outputs["COUNT"][i, 0])
            faces = [Face(box=box_of(b), score=round(float(s), 5))
                     for b, s in zip(outputs["BOXES"][i, :k], outputs["SCORES"][i, :k], strict=True)]
            result.append(FaceDetection(face_count=len(faces), faces=faces))
        return result
