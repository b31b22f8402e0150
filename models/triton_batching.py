"""The one execute loop of Argus' python-backend Triton models (``triton_repo/*/1/model.py``).

PURE PYTHON, NO ARGUS IMPORTS: this file runs inside Triton's python stub, where Argus is not installed.
``argus models pull`` and the embedded stack copy it into every model folder as
``triton_repo/<model>/triton_batching.py`` (``models.triton_backend.install_backend``); the stub puts
``<model>/`` on ``sys.path``, so ``model.py`` imports it by name (measurements: triton_repo/README.md).

* ``BatchingModel`` implements Triton's ``initialize`` / ``execute`` / ``finalize`` once: it reads the model
  config, gathers each request's inputs, checks dtype and shape against the config, concatenates the requests
  into one batch, calls ``run(batch) -> outputs`` and splits the outputs back per request. A malformed request
  gets its own error response and never fails the others; if ``run`` raises, only the requests of that batch
  fail. Requests whose variable (-1) dims differ (text_embed: sequence length) or that leave out different
  optional inputs cannot be stacked: they are grouped and each group runs separately.
* ``OnnxCore`` / ``OnnxModel``: a ``model.onnx`` next to ``model.py`` run by onnxruntime on CPU; serves any
  graph whose inputs and outputs are the config's (efficientnet_lite0, text_embed, nsfw_nudenet,
  coco_centernet, clip, clip_text).

numpy: python backend 2.51 returns EMPTY tensors for ``pb_utils.Tensor(name, ndarray)`` with numpy 2; the
project pins numpy<2 (with numpy 2, outputs would have to go through ``pb_utils.Tensor.from_dlpack``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

# Triton config data types -> numpy (TYPE_STRING: numpy object arrays of bytes, as pb_utils hands them over)
DTYPES = {
    "TYPE_BOOL": np.dtype(np.bool_),
    "TYPE_UINT8": np.dtype(np.uint8),
    "TYPE_UINT16": np.dtype(np.uint16),
    "TYPE_UINT32": np.dtype(np.uint32),
    "TYPE_UINT64": np.dtype(np.uint64),
    "TYPE_INT8": np.dtype(np.int8),
    "TYPE_INT16": np.dtype(np.int16),
    "TYPE_INT32": np.dtype(np.int32),
    "TYPE_INT64": np.dtype(np.int64),
    "TYPE_FP16": np.dtype(np.float16),
    "TYPE_FP32": np.dtype(np.float32),
    "TYPE_FP64": np.dtype(np.float64),
    "TYPE_STRING": np.dtype(np.object_),
}


class RequestError(ValueError):
    """One request's inputs do not match the model config; answered in that request's response only."""


class TensorSpec:
    """One input or output of the model config: name, numpy dtype, per-row dims (-1: variable), optional."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.name = entry["name"]
        self.data_type = entry["data_type"]
        if self.data_type not in DTYPES:
            raise ValueError(f"{self.name}: unsupported data_type {self.data_type}")
        self.dtype = DTYPES[self.data_type]
        self.dims = tuple(int(d) for d in entry.get("dims", []))
        self.optional = bool(entry.get("optional", False))

    def describe(self) -> str:
        return f"{_dtype_name(self.dtype)} {_dims(('N', *self.dims))}"

    def check(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` itself if it is a batch of rows of this spec, else RequestError (THE error text format)."""
        # BYTES arrive as object arrays; bytes/str arrays are accepted too
        dtype_ok = arr.dtype.kind in "OSU" if self.dtype == np.object_ else arr.dtype == self.dtype
        shape_ok = arr.ndim == len(self.dims) + 1 and all(
            d in (-1, s) for d, s in zip(self.dims, arr.shape[1:], strict=True)
        )
        if not (dtype_ok and shape_ok):
            raise RequestError(
                f"{self.name}: expected {self.describe()}, got {_dtype_name(arr.dtype)} {_dims(arr.shape)}"
            )
        return arr

    def variable_sizes(self, arr: np.ndarray) -> tuple[int, ...]:
        return tuple(s for d, s in zip(self.dims, arr.shape[1:], strict=True) if d == -1)


def _dims(shape: Any) -> str:
    return f"[{','.join(map(str, shape))}]"


def _dtype_name(dtype: np.dtype) -> str:
    return "bytes" if dtype.kind in "OSU" else dtype.name


def config_parameters(config: dict[str, Any]) -> dict[str, str]:
    """The config's ``parameters { key: ... value: { string_value: ... } }`` as a plain dict."""
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


class BatchingModel:
    """Triton ``TritonPythonModel`` base: subclasses implement ``load`` and ``run`` (and may set the attributes)."""

    artifact: str | None = None  # file in the version dir that must exist, e.g. "model.onnx"
    missing_hint = "run `argus models pull`"  # appended to the "<artifact> is missing" load error
    same_shape: tuple[str, ...] = ()  # inputs that must have identical shapes in a request (text_embed)

    # ---- to implement ------------------------------------------------------------------------------------

    def load(self, version_dir: str, params: dict[str, str], args: dict[str, str]) -> None:
        """Load the weights once per model instance (``params``: the config's parameters)."""
        raise NotImplementedError

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All rows of the stacked requests -> every config output, with as many rows as the inputs."""
        raise NotImplementedError

    def unload(self) -> None:
        """Release what ``load`` took (finalize)."""

    def default_input(self, name: str, rows: int) -> np.ndarray | None:
        """Value of optional input ``name`` for a request that left it out (None: the batch runs without it)."""
        return None

    # ---- Triton's python backend contract -----------------------------------------------------------------

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils  # only exists inside Triton's stub (tests: a fake)

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.model_name = args.get("model_name") or config.get("name", "model")
        if int(config.get("max_batch_size", 1)) <= 0:  # Triton always sends it; 0: no batch dim to stack on
            raise pb_utils.TritonModelException(f"{self.model_name}: BatchingModel needs max_batch_size > 0")
        self.inputs = [TensorSpec(i) for i in config["input"]]
        self.outputs = [TensorSpec(o) for o in config["output"]]
        self.params = config_parameters(config)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        if self.artifact and not os.path.exists(os.path.join(version_dir, self.artifact)):
            raise pb_utils.TritonModelException(
                f"{os.path.join(version_dir, self.artifact)} is missing; {self.missing_hint}"
            )
        self.load(version_dir, self.params, args)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; a failing request gets its own error, the others their outputs."""
        pb = self.pb
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[tuple[int, dict[str, np.ndarray]]]] = {}
        for i, request in enumerate(requests):
            try:
                arrays = self._gather(request)
            except Exception as exc:  # noqa: BLE001 - reported in that request's response
                responses[i] = pb.InferenceResponse(error=pb.TritonError(str(exc)))
                continue
            # requests stack only with the same optional inputs present and the same variable dims
            key = tuple((s.name, s.variable_sizes(arrays[s.name])) for s in self.inputs if s.name in arrays)
            groups.setdefault(key, []).append((i, arrays))
        for members in groups.values():
            for i, response in self._run_group(members):
                responses[i] = response
        return responses

    def finalize(self) -> None:
        self.unload()

    # ---- internals ---------------------------------------------------------------------------------------------

    def _gather(self, request: Any) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            tensor = self.pb.get_input_tensor_by_name(request, spec.name)
            if tensor is not None:
                arrays[spec.name] = spec.check(tensor.as_numpy())
            elif not spec.optional:
                raise RequestError(f"{spec.name}: missing input (expected {spec.describe()})")
        rows = {name: len(arr) for name, arr in arrays.items()}
        if not rows:
            raise RequestError("the request has no inputs")
        if len(set(rows.values())) > 1:
            got = ", ".join(f"{name} {n}" for name, n in rows.items())
            raise RequestError(f"inputs must have the same number of rows, got {got}")
        n = next(iter(rows.values()))
        for spec in self.inputs:
            if spec.name not in arrays and (value := self.default_input(spec.name, n)) is not None:
                arrays[spec.name] = value
        shapes = {name: arrays[name].shape for name in self.same_shape if name in arrays}
        if len(set(shapes.values())) > 1:
            got = ", ".join(f"{name} {_dims(shape)}" for name, shape in shapes.items())
            raise RequestError(f"inputs {', '.join(shapes)} must have the same shape, got {got}")
        return arrays

    def _run_group(self, members: list[tuple[int, dict[str, np.ndarray]]]) -> list[tuple[int, Any]]:
        pb = self.pb
        names = list(members[0][1])
        sizes = [len(arrays[names[0]]) for _, arrays in members]
        try:
            if len(members) == 1:
                batch = members[0][1]
            else:
                batch = {n: np.concatenate([arrays[n] for _, arrays in members]) for n in names}
            result = self.run(batch)
            outputs = {}
            for spec in self.outputs:
                if spec.name not in result:
                    raise RuntimeError(f"run() returned no {spec.name}")
                out = np.asarray(result[spec.name])
                if len(out) != sum(sizes):
                    raise RuntimeError(f"run() returned {len(out)} rows of {spec.name} for {sum(sizes)} inputs")
                outputs[spec.name] = out if spec.dtype == np.object_ else out.astype(spec.dtype, copy=False)
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: each of its requests says why
            error = f"{self.model_name} failed: {type(exc).__name__}: {exc}"
            logger = getattr(pb, "Logger", None)
            if logger is not None:
                logger.log_error(error)
            return [(i, pb.InferenceResponse(error=pb.TritonError(error))) for i, _ in members]
        answers, start = [], 0
        for (i, _), size in zip(members, sizes, strict=True):
            tensors = [pb.Tensor(name, np.ascontiguousarray(out[start:start + size])) for name, out in outputs.items()]
            answers.append((i, pb.InferenceResponse(output_tensors=tensors)))
            start += size
        return answers


class OnnxCore:
    """``model.onnx`` in ``version_dir`` on onnxruntime's CPU provider; ``infer`` maps input names to outputs.

    Also the in-process model of the tests and benchmarks (same session options as inside Triton).
    """

    def __init__(self, version_dir: str, params: dict[str, str] | None = None, artifact: str = "model.onnx") -> None:
        import onnxruntime as ort

        params = params or {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads") or 1)
        opts.inter_op_num_threads = 1
        # Triton shares the cores with decoding, Kafka and the sinks: idle ORT threads must sleep,
        # not spin (spinning burned ~30% more CPU per image in the pipeline benchmark)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = os.path.join(version_dir, artifact)
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {name: np.ascontiguousarray(inputs[name]) for name in self.input_names if name in inputs}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))

    def close(self) -> None:
        self.session = None


class OnnxModel(BatchingModel):
    """Any ``model.onnx`` whose graph inputs and outputs are the config's; parameter ``intra_op_threads``."""

    artifact = "model.onnx"
    core: OnnxCore | None = None

    def load(self, version_dir: str, params: dict[str, str], args: dict[str, str]) -> None:
        self.core = OnnxCore(version_dir, params, self.artifact)

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.core is not None, "run() before initialize()"
        return self.core.infer(batch)

    def unload(self) -> None:
        if self.core is not None:
            self.core.close()
        self.core = None
