"""Triton python-backend model: runs ``model.onnx`` (next to this file) with onnxruntime on CPU.

Used by the embedded/CI server (``configs/cpu.pbtxt``, ``--model-config-name=cpu``), which has no
onnxruntime backend; production serves the same ``model.onnx`` with the onnxruntime backend
(``config.pbtxt``). Self-contained on purpose: it runs inside Triton's stub, where Argus need not be
installed. All requests of one ``execute`` call go through a single ORT run, then are split back.

numpy: the project pins numpy<2. With numpy 2, python backend 2.51 returns EMPTY tensors for
``pb_utils.Tensor(name, ndarray)``; outputs would then have to go through DLPack
(``pb_utils.Tensor.from_dlpack``).
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        """Load the ONNX graph once per model instance."""
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(f"{path} is missing; run `argus models pull`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads") or 2)
        opts.inter_op_num_threads = 1
        # Triton shares the cores with decoding, Kafka and the sinks: idle ORT threads must sleep,
        # not spin (spinning burned ~30% more CPU per image in the pipeline benchmark)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.input_dims = tuple(int(d) for d in config["input"][0]["dims"])
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
        }

    def execute(self, requests):
        """One response per request; a bad request gets its own error and never fails the others."""
        responses = [None] * len(requests)
        arrays, owners = [], []
        for i, request in enumerate(requests):
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
                if tensor is None:
                    raise ValueError(f"missing input {self.input_name}")
                arr = tensor.as_numpy()
                if arr.dtype != np.uint8 or tuple(arr.shape[1:]) != self.input_dims:
                    raise ValueError(
                        f"expected uint8 [N,{','.join(map(str, self.input_dims))}], "
                        f"got {arr.dtype} {list(arr.shape)}"
                    )
                arrays.append(arr)
                owners.append(i)
            except Exception as exc:  # noqa: BLE001 - reported in that request's response
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        if arrays:
            try:
                batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
                results = self.session.run(self.output_names, {self.input_name: batch})
            except Exception as exc:  # noqa: BLE001 - the whole batch failed: every request says why
                for i in owners:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"onnxruntime failed: {exc}")
                    )
                return responses
            start = 0
            for i, arr in zip(owners, arrays, strict=True):
                stop = start + arr.shape[0]
                outputs = [
                    pb_utils.Tensor(
                        name, np.ascontiguousarray(res[start:stop], dtype=self.output_dtypes[name])
                    )
                    for name, res in zip(self.output_names, results, strict=True)
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=outputs)
                start = stop
        return responses

    def finalize(self):
        self.session = None
