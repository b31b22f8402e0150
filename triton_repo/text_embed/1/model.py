"""Triton python-backend model: runs ``model.onnx`` (all-MiniLM-L6-v2, next to this file) with onnxruntime.

Used by the embedded/CI server (``configs/cpu.pbtxt``); production serves the same ``model.onnx`` with
the onnxruntime backend (``config.pbtxt``). Multi-input: INPUT_IDS + ATTENTION_MASK int64 [N,T]
-> EMBEDDING fp32 [N,384]. Requests of one ``execute`` call that share T go through one ORT run;
different T (the client pads to multiples of 32) run separately. Self-contained (no Argus imports).
"""

import json
import os

import numpy as np


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(f"{path} is missing; run `argus models pull`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads") or 1)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        pb = self.pb
        responses = [None] * len(requests)
        groups = {}  # sequence length -> [(request index, {name: array})]
        for i, request in enumerate(requests):
            try:
                arrays = {}
                for name in self.input_names:
                    tensor = pb.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"missing input {name}")
                    arrays[name] = tensor.as_numpy().astype(np.int64, copy=False)
                shapes = {a.shape for a in arrays.values()}
                if len(shapes) != 1 or len(next(iter(shapes))) != 2:
                    raise ValueError(f"inputs must share one [N,T] shape, got {sorted(shapes)}")
                groups.setdefault(next(iter(shapes))[1], []).append((i, arrays))
            except Exception as exc:  # noqa: BLE001 - reported in that request's response
                responses[i] = pb.InferenceResponse(error=pb.TritonError(str(exc)))
        for members in groups.values():
            try:
                feeds = {n: np.concatenate([a[n] for _, a in members]) for n in self.input_names}
                results = self.session.run(self.output_names, feeds)
            except Exception as exc:  # noqa: BLE001
                for i, _ in members:
                    responses[i] = pb.InferenceResponse(error=pb.TritonError(f"onnxruntime failed: {exc}"))
                continue
            start = 0
            for i, arrays in members:
                stop = start + arrays[self.input_names[0]].shape[0]
                responses[i] = pb.InferenceResponse(output_tensors=[
                    pb.Tensor(n, np.ascontiguousarray(r[start:stop], dtype=np.float32))
                    for n, r in zip(self.output_names, results, strict=True)])
                start = stop
        return responses

    def finalize(self):
        self.session = None
