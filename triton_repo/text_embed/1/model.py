"""Triton python-backend model: runs ``model.onnx`` (all-MiniLM-L6-v2, next to this file) with onnxruntime.

Used by the embedded/CI server (``configs/cpu.pbtxt``); production serves the same ``model.onnx`` with
the onnxruntime backend (``config.pbtxt``). Multi-input: INPUT_IDS + ATTENTION_MASK int64 [N,T]
-> EMBEDDING fp32 [N,384]. Requests of one ``execute`` call that share T go through one ORT run;
different T (the client pads to multiples of 32) run separately (the shared loop groups by variable dims).
"""

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import OnnxCore, OnnxModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import OnnxCore, OnnxModel  # inside Triton: run `argus models pull` (copies it)


class TritonPythonModel(OnnxModel):
    same_shape = ("INPUT_IDS", "ATTENTION_MASK")


Core = OnnxCore  # the model without Triton (tests, benchmarks)
