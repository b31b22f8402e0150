"""Puts the shared python-backend code (``models/triton_batching.py``) where Triton's stub imports it.

Every ``triton_repo/<model>/1/model.py`` does ``from triton_batching import ...``. Triton's python stub puts
``<repo>/<model>/1`` and ``<repo>/<model>`` on ``sys.path`` but NOT the repository root, and any directory at
the root without a config.pbtxt (even ``__pycache__`` or a hidden one) fails the load of the whole repository
in ``--model-control-mode=none`` (the production container). So each model folder gets its own copy,
``<model>/triton_batching.py`` (git-ignored), written by ``argus models pull`` (the models-init service fills
the production volume) and by the embedded stack before Triton starts. Measurements: triton_repo/README.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["BACKEND_FILE", "SOURCE", "install_backend"]

BACKEND_FILE = "triton_batching.py"
SOURCE = Path(__file__).with_name(BACKEND_FILE)


def install_backend(model_dir: Path) -> None:
    """Write ``model_dir/triton_batching.py`` (the shared execute loop) if it is missing or differs.

    Idempotent (an up-to-date copy is left untouched, so a read-only repository that is current is fine) and
    atomic (a temp file in the same folder, then ``os.replace``): a Triton loading concurrently sees the old or
    the new file, never half of one.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist")
    data = SOURCE.read_bytes()
    target = model_dir / BACKEND_FILE
    try:
        if target.read_bytes() == data and not target.is_symlink():
            return
    except OSError:
        pass  # missing (or unreadable): written below
    fd, tmp = tempfile.mkstemp(prefix=f".{BACKEND_FILE}.", suffix=".tmp", dir=model_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
