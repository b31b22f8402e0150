"""A model added the way CONTRIBUTING.md says, as a test fixture: its folder (``triton_repo/swatch/``), this class,
and one registry line (here ``Settings.model_plugins``, the registry's extension point for installations).

``swatch`` names the dominant colour of an image (red, green or blue) and embeds its mean colour: a real ONNX
graph, built by ``build`` from its "weights" file (``swatch.json``: the logit scale and the label names), served
by Triton, run by the shared processor runtime, indexed and searched like any model.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

from models.base import IMAGE_AND_VIDEO, CheckResult, Item, Model
from models.frames import media_frames
from models.probes import triton_infer
from schemas.events import AnnotationPayload, ImageClassification, Label, MediaUploaded

HERE = Path(__file__).resolve().parent
SIZE = 32


class Swatch(Model):
    name = "swatch"
    task = "dominant colour (test fixture)"
    version = "swatch"  # + "-<sha256 prefix of swatch.json>"
    source_package = "tests/support/fixture_model/swatch.json"
    source_registry = "file"
    licence = "Apache-2.0 (Argus tests)"
    outputs = ["EMBEDDING", "PROBS"]
    media_types = IMAGE_AND_VIDEO
    version_from_weights = True
    build_params = {"graph": "mean RGB -> softmax(scale * rgb), L2(rgb)", "revision": 1}
    max_batch = 16

    @cached_property
    def spec(self) -> dict[str, Any]:
        return dict(json.loads(self.weights().read_text()))

    def weights(self) -> Path:
        return HERE / "swatch.json"

    def build(self, dst: Path) -> None:
        scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [float(self.spec["logit_scale"]) / 255.0])
        nodes = [
            helper.make_node("Cast", ["IMAGE"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["f"], ["rgb"], axes=[1, 2], keepdims=0),
            helper.make_node("LpNormalization", ["rgb"], ["EMBEDDING"], axis=1, p=2),
            helper.make_node("Mul", ["rgb", "scale"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["PROBS"], axis=1),
        ]
        graph = helper.make_graph(
            nodes, "swatch",
            [helper.make_tensor_value_info("IMAGE", TensorProto.UINT8, ["n", SIZE, SIZE, 3])],
            [helper.make_tensor_value_info("EMBEDDING", TensorProto.FLOAT, ["n", 3]),
             helper.make_tensor_value_info("PROBS", TensorProto.FLOAT, ["n", 3])],
            initializer=[scale])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8  # what the onnxruntime of the embedded server reads
        onnx.checker.check_model(model)
        onnx.save(model, str(dst))

    def check(self, client: Any) -> CheckResult:
        red = np.zeros((1, SIZE, SIZE, 3), np.uint8)
        red[..., 0] = 255
        probs = triton_infer(client, self.name, {"IMAGE": red}, ["PROBS"])["PROBS"][0]
        return CheckResult(bool(np.argmax(probs) == 0), f"a red square: probs {np.round(probs, 3).tolist()}")

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        return [Item(event, ms, {"IMAGE": np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX),
                                                     dtype=np.uint8)})
                for ms, img in media_frames(self.settings, event, data)]

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        labels = self.spec["labels"]
        result: list[AnnotationPayload] = []
        for i in range(n):
            best = int(np.argmax(outputs["PROBS"][i]))
            vec = [round(float(x), 6) for x in outputs["EMBEDDING"][i]]
            result.append(ImageClassification(
                labels=[Label(name=labels[best], score=round(float(outputs["PROBS"][i, best]), 5), class_id=best)],
                embedding=vec, embedding_dim=len(vec)))
        return result
