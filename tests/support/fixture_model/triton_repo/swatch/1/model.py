"""Triton python-backend model: runs ``model.onnx`` (next to this file) with onnxruntime on CPU.

Used by the embedded/CI server (``configs/cpu.pbtxt``, ``--model-config-name=cpu``), which has no
onnxruntime backend; production serves the same ``model.onnx`` with the onnxruntime backend
(``config.pbtxt``). IMAGE uint8 [N,32,32,3] -> EMBEDDING fp32 [N,3], PROBS fp32 [N,3] (a test fixture model).
The execute loop (batching, checks, per-request errors) is the shared ``triton_batching.OnnxModel``.
"""

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import OnnxCore, OnnxModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import OnnxCore, OnnxModel  # inside Triton: run `argus models pull` (copies it)


class TritonPythonModel(OnnxModel):
    pass


Core = OnnxCore  # the model without Triton (tests, benchmarks)
