"""Real sample photos that ship inside the scikit-image and scikit-learn wheels (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# skimage.data names of real photographs (colour or greyscale), with a human title
SKIMAGE_PHOTOS = {
    "astronaut": "Astronaut Eileen Collins",
    "chelsea": "Chelsea the cat",
    "coffee": "Cup of coffee",
    "rocket": "Rocket on the launch pad",
    "camera": "Cameraman with a camera on a tripod",
    "hubble_deep_field": "Hubble deep field",
    "immunohistochemistry": "Immunohistochemistry microscopy",
    "retina": "Human retina",
    "grass": "Grass",
    "gravel": "Gravel",
    "brick": "Brick wall",
    "coins": "Greek coins",
    "page": "Scanned book page",
}


def export_samples(folder: Path) -> list[Path]:
    """Write the sample photos as JPEG files into ``folder``; returns their paths."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []

    def save(name: str, arr: np.ndarray) -> None:
        path = folder / f"{name}.jpg"
        if not path.exists():
            img = Image.fromarray(np.asarray(arr).astype(np.uint8))
            img.convert("RGB").save(path, quality=92)
        out.append(path)

    for name in SKIMAGE_PHOTOS:
        save(name, getattr(sd, name)())
    left, _right = sd.stereo_motorcycle()[:2]
    save("motorcycle", left)
    sk = load_sample_images()
    for fname, arr in zip(sk.filenames, sk.images, strict=True):
        save(Path(fname).stem, arr)  # china, flower
    return out
