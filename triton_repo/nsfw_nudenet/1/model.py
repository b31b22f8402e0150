"""Triton python-backend model: runs NudeNet's wrapped ``model.onnx`` (next to this file) with onnxruntime on CPU.

Used by the embedded/CI server (``configs/cpu.pbtxt``, ``--model-config-name=cpu``), which has no
onnxruntime backend; production serves the same ``model.onnx`` with the onnxruntime backend
(``config.pbtxt``).

IO: ``IMAGE`` uint8 [N,320,320,3] (letterboxed RGB; /255 and NCHW are in the graph) -> ``RAW`` float32
[N,22,2100] (YOLOv8 head: cx, cy, w, h + 18 class scores per anchor). The graph's batch axis is dynamic,
so all requests of one ``execute`` call go through a single ORT run and are split back; decoding and NMS
happen in the processor (models/nudenet.py).
"""

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import OnnxCore, OnnxModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import OnnxCore, OnnxModel  # inside Triton: run `argus models pull` (copies it)


class TritonPythonModel(OnnxModel):
    missing_hint = "run `pip install --no-deps nudenet==3.4.2` and `argus models pull nsfw_nudenet`"


Core = OnnxCore  # the model without Triton (tests, benchmarks)
