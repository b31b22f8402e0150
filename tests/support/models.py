"""Running a model without Triton: the ``Core`` of its ``triton_repo/<name>/1/model.py`` on the pulled artifact."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from skimage import data

from core.settings import Settings
from models import store

REPO = Path(__file__).resolve().parents[2]


def load_core(name: str) -> Any:
    """triton_repo/<name>/1/model.py's Core (no Triton), on the pulled artifact."""
    store.pull(Settings(), name)
    path = REPO / "triton_repo" / name / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"core_{name}", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Core(str(path.parent), {"intra_op_threads": "1"})


def photo(name: str) -> np.ndarray:
    """One of scikit-image's sample photos as an array (``astronaut``, ``chelsea`` the cat, ``coffee`` ...)."""
    return np.asarray(getattr(data, name)())
