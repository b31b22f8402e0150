"""The one place that imports ``open_clip`` (open_clip_torch 3.3.0), with the torchvision workaround.

open_clip imports torchvision at module level (its image transforms). PyPI's ``torchvision==0.28.0`` is a
CUDA build; beside our CPU ``torch==2.13.0+cpu`` its import dies in ``torchvision/_meta_registrations.py``
with "operator torchvision::nms does not exist" (that module registers fake/meta kernels for the compiled
detection ops, which the CPU torch wheel does not know). Nothing here uses those ops: open_clip only needs
``torchvision.transforms``. So before torchvision is first imported we put an empty module in its place in
``sys.modules``; ``torchvision.transforms`` and open_clip then import fine and ``create_model(...)`` builds.
The workaround is harmless where torchvision does import (a matching CPU build): it only skips the meta
registrations, which matter for ``torch.compile``/fake tensors on detection ops, never used here.

Import open_clip ONLY through ``import_open_clip()``; the model is needed at pull time (ONNX export) and
in tests, never at serving time (Triton runs the ONNX graphs; the client tokenises with
``models.clip.BpeTokenizer``).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

__all__ = ["import_open_clip", "open_clip_installed"]

_STUB = "torchvision._meta_registrations"


def open_clip_installed() -> bool:
    return importlib.util.find_spec("open_clip") is not None


def import_open_clip() -> Any:
    """``open_clip`` (imported once; ~5 s on this CPU, it pulls torch + torchvision)."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    if "torchvision" not in sys.modules and _STUB not in sys.modules:
        sys.modules[_STUB] = types.ModuleType(_STUB)  # see the module docstring
    import open_clip

    return open_clip
