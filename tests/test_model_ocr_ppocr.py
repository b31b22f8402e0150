"""ocr_ppocr: PP-OCRv4 in-process on rendered text and a photo (the same Core Triton's python backend runs);
through Triton and the pipeline in tests/test_model_registry.py and tests/test_suite_pipeline.py.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from models import ocr_ppocr, probes
from tests.support.models import load_core, photo


def test_ocr_reads_rendered_text_and_not_photos() -> None:
    from models.frames import letterbox

    core = load_core("ocr_ppocr")
    canvas, size = letterbox(probes.rendered_text(), ocr_ppocr.OCR_SIZE)
    cat, cat_size = letterbox(Image.fromarray(photo("chelsea")), ocr_ppocr.OCR_SIZE)
    out = core.infer({"IMAGE": np.stack([canvas, cat]), "SIZE": np.stack([size, cat_size])})
    lines = [t.decode() for t in out["TEXT"][0, : out["COUNT"][0, 0]]]
    assert probes.squash(" ".join(lines)) == probes.squash(" ".join(probes.OCR_PROBE)), lines
    assert out["COUNT"][1, 0] == 0
    boxes = out["BOXES"][0, : len(lines)]
    assert np.all((boxes >= 0) & (boxes <= 1)) and boxes[0, 1] < boxes[1, 1]  # top line first
    core.close()
