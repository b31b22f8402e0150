"""face_mtcnn: the MTCNN cascade in-process on the sample photos (the same Core Triton's python backend runs);
through Triton and the pipeline in tests/test_model_registry.py and tests/test_suite_pipeline.py.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from models import face_mtcnn
from tests.support.models import load_core, photo


def test_mtcnn_astronaut_one_face_cat_none() -> None:
    from models.frames import letterbox

    core = load_core("face_mtcnn")
    images, sizes = zip(*(letterbox(Image.fromarray(photo(n)), face_mtcnn.FACE_SIZE) for n in ("astronaut", "chelsea")),
                        strict=True)
    out = core.infer({"IMAGE": np.stack(images), "SIZE": np.stack(sizes)})
    assert out["COUNT"][:, 0].tolist() == [1, 0]
    x1, y1, x2, y2 = out["BOXES"][0, 0] * 512  # the astronaut photo is 512x512
    assert abs(x1 - 181) < 10 and abs(y1 - 62) < 10 and abs(x2 - 268) < 10 and abs(y2 - 172) < 10
    assert out["SCORES"][0, 0] > 0.99
