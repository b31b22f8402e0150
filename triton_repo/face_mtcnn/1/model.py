"""Triton python-backend model: MTCNN face detection (P-Net -> R-Net -> O-Net cascade) in torch.

Network definitions and the cascade follow facenet-pytorch 2.6.0 (MIT, (c) 2019 Timothy Esler),
rewritten without torchvision (PyPI torchvision does not load beside the CPU torch this project pins):
NMS is done in numpy. Weights: ``mtcnn.pt`` next to this file (built by ``argus models pull`` from
the pnet/rnet/onet.pt files in the facenet-pytorch wheel).

IO (batched, fixed shapes so the runtime and Triton's dynamic batcher can stack requests):
  IMAGE  uint8 [640,640,3]  the frame letterboxed into the top-left corner (aspect kept)
  SIZE   int32 [2]          width, height of the frame inside the canvas
  BOXES  fp32 [64,4]        x1,y1,x2,y2 normalised to the frame (0..1); unused rows are 0
  SCORES fp32 [64]          face probability; unused rows are 0
  COUNT  int32 [1]          faces found (<= 64, the most confident kept)

``Core`` is the model without Triton (the in-process benchmark and the tests use it);
``TritonPythonModel`` wraps it. Self-contained: Argus need not be installed where Triton runs.
"""

import os

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import BatchingModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import BatchingModel  # inside Triton: run `argus models pull` (copies it)

MAX_FACES = 64


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x)))))))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


def nms(boxes, scores, threshold, method="Union"):
    """Greedy NMS (numpy); boxes [N,4] in pixels. Returns kept indices, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[-1]
        keep.append(i)
        rest = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        union = np.minimum(area[i], area[rest]) if method == "Min" else area[i] + area[rest] - inter
        overlap = inter / union
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _rerec(b):
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    side = torch.max(w, h)
    b[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
    b[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
    b[:, 2:4] = b[:, :2] + side.repeat(2, 1).permute(1, 0)
    return b


def _bbreg(b, reg):
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b[:, :4] = torch.stack([b[:, 0] + reg[:, 0] * w, b[:, 1] + reg[:, 1] * h,
                            b[:, 2] + reg[:, 2] * w, b[:, 3] + reg[:, 3] * h]).permute(1, 0)
    return b


def _crops(img, boxes, size):
    """Crops of ``boxes`` (clipped to the image), each resized to size x size, normalised."""
    h, w = img.shape[2:4]
    b = boxes.trunc().int().numpy()
    out = []
    for x, y, ex, ey in b[:, :4]:
        x, y, ex, ey = max(int(x), 1), max(int(y), 1), min(int(ex), w), min(int(ey), h)
        crop = img[:, :, y - 1:ey, x - 1:ex] if ey > y - 1 and ex > x - 1 else img[:, :, :1, :1]
        out.append(interpolate(crop, size=(size, size), mode="area"))
    return (torch.cat(out, 0) - 127.5) * 0.0078125


class Core:
    """MTCNN on one RGB image at a time (the frames of a batch have different content sizes)."""

    def __init__(self, version_dir, params=None):
        params = params or {}
        torch.set_num_threads(int(params.get("intra_op_threads") or 1))
        state = torch.load(os.path.join(version_dir, "mtcnn.pt"), map_location="cpu", weights_only=True)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name in ("pnet", "rnet", "onet"):
            getattr(self, name).load_state_dict(state[name], strict=True)
            getattr(self, name).eval()
        self.min_size = float(params.get("min_face_size") or 20)
        self.thresholds = [float(t) for t in (params.get("thresholds") or "0.6,0.7,0.7").split(",")]
        self.factor = 0.709

    @torch.no_grad()
    def detect(self, rgb):
        """rgb uint8 [H,W,3] -> (boxes [K,4] pixels, scores [K]), best first."""
        img = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]  # a copy: inputs are read-only
        h, w = img.shape[2:4]
        m = 12.0 / self.min_size
        minl = min(h, w) * m
        scales, s = [], m
        while minl >= 12:
            scales.append(s)
            s *= self.factor
            minl *= self.factor
        cands = []
        for scale in scales:  # stage 1: P-Net over the image pyramid
            data = (interpolate(img, size=(int(h * scale + 1), int(w * scale + 1)), mode="area") - 127.5) * 0.0078125
            reg, probs = self.pnet(data)
            prob = probs[0, 1]
            mask = prob >= self.thresholds[0]
            if not mask.any():
                continue
            idx = mask.nonzero().float().flip(1)  # (x, y) cells
            q1 = ((2 * idx + 1) / scale).floor()
            q2 = ((2 * idx + 12) / scale).floor()
            r = reg[0].permute(1, 2, 0)[mask]
            bb = torch.cat([q1, q2, prob[mask].unsqueeze(1), r], 1)
            keep = nms(bb[:, :4].numpy(), bb[:, 4].numpy(), 0.5)
            cands.append(bb[keep])
        if not cands:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        bb = torch.cat(cands, 0)
        bb = bb[nms(bb[:, :4].numpy(), bb[:, 4].numpy(), 0.7)]
        rw, rh = bb[:, 2] - bb[:, 0], bb[:, 3] - bb[:, 1]
        boxes = torch.stack([bb[:, 0] + bb[:, 5] * rw, bb[:, 1] + bb[:, 6] * rh,
                             bb[:, 2] + bb[:, 7] * rw, bb[:, 3] + bb[:, 8] * rh, bb[:, 4]], 1)
        boxes = _rerec(boxes)
        # stage 2: R-Net refines
        reg, probs = self.rnet(_crops(img, boxes, 24))
        score = probs[:, 1]
        ok = score > self.thresholds[1]
        boxes, reg = torch.cat([boxes[ok, :4], score[ok, None]], 1), reg[ok]
        if len(boxes) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        keep = nms(boxes[:, :4].numpy(), boxes[:, 4].numpy(), 0.7)
        boxes = _rerec(_bbreg(boxes[keep], reg[keep]))
        # stage 3: O-Net decides
        reg, _points, probs = self.onet(_crops(img, boxes, 48))
        score = probs[:, 1]
        ok = score > self.thresholds[2]
        boxes = _bbreg(torch.cat([boxes[ok, :4], score[ok, None]], 1), reg[ok])
        if len(boxes) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        keep = nms(boxes[:, :4].numpy(), boxes[:, 4].numpy(), 0.7, "Min")
        boxes = boxes[keep].numpy()
        return boxes[:, :4].astype(np.float32), boxes[:, 4].astype(np.float32)

    def infer(self, inputs):
        images, sizes = inputs["IMAGE"], inputs["SIZE"]
        n = images.shape[0]
        out_boxes = np.zeros((n, MAX_FACES, 4), np.float32)
        out_scores = np.zeros((n, MAX_FACES), np.float32)
        counts = np.zeros((n, 1), np.int32)
        for i in range(n):
            w, h = (int(v) for v in sizes[i])
            w, h = max(1, min(w, images.shape[2])), max(1, min(h, images.shape[1]))
            boxes, scores = self.detect(images[i, :h, :w])
            k = min(len(scores), MAX_FACES)
            if k:
                norm = boxes[:k] / np.array([w, h, w, h], np.float32)
                out_boxes[i, :k] = np.clip(norm, 0.0, 1.0)
                out_scores[i, :k] = np.clip(scores[:k], 0.0, 1.0)
            counts[i, 0] = k
        return {"BOXES": out_boxes, "SCORES": out_scores, "COUNT": counts}


class TritonPythonModel(BatchingModel):
    """``Core`` behind the shared execute loop (``triton_batching``): requests stacked, split back."""

    artifact = "mtcnn.pt"

    def load(self, version_dir, params, args):
        self.core = Core(version_dir, params)

    def run(self, batch):
        return self.core.infer(batch)

    def unload(self):
        self.core = None
