"""Triton python-backend model: face descriptors (dlib ResNet, 128-d) for aligned face crops.

For each frame: the face boxes (given by the client, e.g. the MTCNN detector's, or found here with dlib's HOG
detector when the request leaves ``BOXES`` out), the 5-point landmarks of each box
(``shape_predictor_5_face_landmarks.dat``), a 150x150 crop aligned on them (``dlib.get_face_chip``), its
128-d descriptor (``dlib_face_recognition_resnet_model_v1.dat``) and two quality measures: the face's size in
canvas pixels and the sharpness of the aligned crop (variance of its Laplacian). Weights: PyPI
``face_recognition_models==0.3.0`` (CC0), run with ``dlib-bin==20.0.1.post1``; ``argus models pull face_embed``
copies the two files next to this one.

IO (batched, fixed shapes so requests stack):
  IMAGE        uint8 [640,640,3]  the frame letterboxed into the top-left corner (aspect kept)
  SIZE         int32 [2]          width, height of the frame inside the canvas
  BOXES        fp32 [32,4]        optional: x1,y1,x2,y2 normalised to the frame (a detector's output)
  SCORES       fp32 [32]          optional, with BOXES: the detector's scores
  COUNT        int32 [1]          optional, with BOXES: how many rows of BOXES are faces
  -> BOXES_OUT fp32 [32,4], SCORES_OUT fp32 [32], DESCRIPTORS fp32 [32,128], SIZE_PX fp32 [32],
     SHARPNESS fp32 [32], FACES int32 [1]

``Core`` is the model without Triton (tests, the in-process benchmark); ``TritonPythonModel`` wraps it.
Self-contained: Argus need not be installed where Triton runs.
"""

import os

import numpy as np

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import BatchingModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import BatchingModel

MAX_FACES = 32
DIM = 128
CHIP = 150
PREDICTOR = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"


def sharpness(chip):
    """Variance of the 4-neighbour Laplacian of the grey aligned crop (blur lowers it)."""
    g = np.asarray(chip, dtype=np.float32).mean(axis=2)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


class Core:
    """Landmarks, alignment and descriptors for the faces of one frame at a time."""

    def __init__(self, version_dir, params=None):
        import dlib

        params = params or {}
        self.dlib = dlib
        self.predictor = dlib.shape_predictor(os.path.join(version_dir, PREDICTOR))
        self.resnet = dlib.face_recognition_model_v1(os.path.join(version_dir, RESNET))
        self.hog = dlib.get_frontal_face_detector()
        self.upsample = int(params.get("hog_upsample") or 1)
        self.padding = float(params.get("chip_padding") or 0.25)
        self.jitter = int(params.get("jitter") or 0)

    def detect(self, rgb):
        """dlib's HOG detector: (boxes [K,4] pixels, scores [K] in 0..1), best first."""
        rects, scores, _ = self.hog.run(rgb, self.upsample, 0.0)
        order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
        boxes = np.array([[rects[i].left(), rects[i].top(), rects[i].right(), rects[i].bottom()] for i in order],
                         dtype=np.float32).reshape(-1, 4)
        probs = 1.0 / (1.0 + np.exp(-np.asarray([scores[i] for i in order], dtype=np.float32) * 2.0))
        return boxes, probs.astype(np.float32)

    def describe(self, rgb, boxes):
        """rgb uint8 [H,W,3], boxes [K,4] pixels -> (descriptors [K,128], size px [K], sharpness [K])."""
        if len(boxes) == 0:
            return np.zeros((0, DIM), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)
        shapes, sizes = [], []
        for x1, y1, x2, y2 in boxes:
            rect = self.dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            shapes.append(self.predictor(rgb, rect))
            sizes.append(min(x2 - x1, y2 - y1))
        chips = [self.dlib.get_face_chip(rgb, s, size=CHIP, padding=self.padding) for s in shapes]
        if self.jitter:
            desc = [self.resnet.compute_face_descriptor(c, self.jitter) for c in chips]
        else:
            desc = self.resnet.compute_face_descriptor(chips)
        out = np.asarray([np.asarray(d, dtype=np.float32) for d in desc], dtype=np.float32).reshape(-1, DIM)
        return out, np.asarray(sizes, np.float32), np.asarray([sharpness(c) for c in chips], np.float32)

    def infer(self, inputs):
        images, sizes = inputs["IMAGE"], inputs["SIZE"]
        n = images.shape[0]
        out = {
            "BOXES_OUT": np.zeros((n, MAX_FACES, 4), np.float32),
            "SCORES_OUT": np.zeros((n, MAX_FACES), np.float32),
            "DESCRIPTORS": np.zeros((n, MAX_FACES, DIM), np.float32),
            "SIZE_PX": np.zeros((n, MAX_FACES), np.float32),
            "SHARPNESS": np.zeros((n, MAX_FACES), np.float32),
            "FACES": np.zeros((n, 1), np.int32),
        }
        for i in range(n):
            w, h = (int(v) for v in sizes[i])
            w, h = max(1, min(w, images.shape[2])), max(1, min(h, images.shape[1]))
            rgb = np.ascontiguousarray(images[i, :h, :w])
            scale = np.array([w, h, w, h], np.float32)
            if "BOXES" in inputs:
                k = int(inputs["COUNT"][i, 0]) if "COUNT" in inputs else MAX_FACES
                boxes = inputs["BOXES"][i, :k] * scale
                scores = inputs["SCORES"][i, :k] if "SCORES" in inputs else np.ones(k, np.float32)
                keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
                boxes, scores = boxes[keep], scores[keep]
            else:
                boxes, scores = self.detect(rgb)
            k = min(len(boxes), MAX_FACES)
            boxes, scores = boxes[:k], scores[:k]
            desc, size_px, sharp = self.describe(rgb, boxes)
            out["BOXES_OUT"][i, :k] = np.clip(boxes / scale, 0.0, 1.0)
            out["SCORES_OUT"][i, :k] = np.clip(scores, 0.0, 1.0)
            out["DESCRIPTORS"][i, :k] = desc
            out["SIZE_PX"][i, :k] = size_px
            out["SHARPNESS"][i, :k] = sharp
            out["FACES"][i, 0] = k
        return out


class TritonPythonModel(BatchingModel):
    """``Core`` behind the shared execute loop (``triton_batching``): requests stacked, split back. Requests with
    and without ``BOXES`` run as separate groups (the loop groups by the optional inputs present)."""

    artifact = RESNET

    def load(self, version_dir, params, args):
        self.core = Core(version_dir, params)

    def run(self, batch):
        return self.core.infer(batch)

    def unload(self):
        self.core = None
