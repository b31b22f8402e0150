"""Triton python-backend model: runs ``model.onnx`` (a CLIP tower exported by ``argus models pull``, next to
this file) with onnxruntime. The same file serves ``clip`` (IMAGE uint8 [N,224,224,3]) and ``clip_text``
(TOKENS int64 [N,77]; ``clip_text/1/model.py`` is a symlink to this file); both answer EMBEDDING fp32 [N,512],
L2-normalised.

Used by the embedded/CI server (``configs/cpu.pbtxt``); production serves the same ``model.onnx`` with the
onnxruntime backend (``config.pbtxt``). The IO comes from the config, the loop from ``triton_batching``.
"""

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import OnnxCore, OnnxModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import OnnxCore, OnnxModel  # inside Triton: run `argus models pull` (copies it)


class TritonPythonModel(OnnxModel):
    missing_hint = "configure CLIP weights (ARGUS_CLIP__WEIGHTS) and run `argus models pull`"


Core = OnnxCore  # the model without Triton (tests, benchmarks)
