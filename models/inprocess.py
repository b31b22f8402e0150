"""Run a ``triton_repo`` model's ONNX graph in-process with onnxruntime, exactly as Triton serves it.

This is the baseline the benchmarks compare the pipeline against (raw model, no transport, no queue),
and a convenience for tests. Pre-processing lives in the graph; callers pass ``imaging.to_model_input``
arrays, as they do for Triton.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.settings import Settings
from models.registry import get_model

__all__ = ["InProcessModel"]


class InProcessModel:
    """``InProcessModel("efficientnet_lite0").infer(uint8 [N,224,224,3])`` -> {"EMBEDDING", "PROBS"}."""

    def __init__(self, name: str, repo: Path | None = None, threads: int = 2) -> None:
        import onnxruntime as ort

        settings = Settings()
        model = get_model(settings, name)
        self.name = name
        self.path = (repo or settings.triton_repo) / name / "1" / model.artifact
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} is missing; run `argus models pull` first")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # the same settings as the python-backend model.py
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, batch: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
        """One ORT run over the batch; extra named inputs for multi-input models."""
        feeds = {self.input_names[0]: np.ascontiguousarray(batch), **extra}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))
