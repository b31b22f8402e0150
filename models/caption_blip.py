"""Image captioning with BLIP (model ``caption_blip``): weights the operator configures, never downloaded here.

No package registry ships BLIP weights, and Argus never loads from a model hub at run time, so the model is
OPTIONAL: ``ARGUS_CAPTION__WEIGHTS=/path/to/dir`` names a ``save_pretrained`` folder (config.json,
model.safetensors or pytorch_model.bin, tokenizer files, preprocessor_config.json) that the operator fetched
where there is internet (docs/models.md gives the exact commands). Without it the model is unavailable with
the reason (``argus models list``), is not loaded into Triton, and its processor does not start.

``pull`` packs the folder into ``triton_repo/caption_blip/1/blip.zip`` (stored, fixed timestamps: the same
folder gives the same bytes) and the version is ``blip-<sha256 prefix of the weights file>``.

Captions: one sentence per image or keyframe, full-text searchable. Videos get one caption per keyframe
(at most ``max_keyframes``: generation is the costliest step on CPU) and the generic summary, whose text
segments are the distinct captions with their time ranges.
"""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.base import IMAGE_AND_VIDEO, CheckResult, Item, Model
from models.frames import media_frames
from models.probes import photo, triton_infer
from schemas.events import AnnotationPayload, Caption, MediaUploaded

SIZE = 384  # BLIP base/large input (config.pbtxt IMAGE dims)
ARTIFACT = "blip.zip"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the first present is packed and hashed
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # either (fast tokenizer, or BERT WordPiece vocab)
IMAGE_CONFIG_FILES = ("preprocessor_config.json", "processor_config.json")  # older / newer transformers
PACKED_SUFFIXES = (".json", ".txt", ".model")  # configs, vocab, sentencepiece; plus the weights file
HOW_TO = ("download a BLIP captioning checkpoint where there is internet (docs/models.md: "
          "`hf download Salesforce/blip-image-captioning-base --local-dir DIR`, or save_pretrained) "
          "and set ARGUS_CAPTION__WEIGHTS=DIR")


def missing_files(folder: Path) -> list[str]:
    """What a ``save_pretrained`` BLIP folder lacks (empty: complete)."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    for group in (WEIGHT_FILES, TOKENIZER_FILES, IMAGE_CONFIG_FILES):
        if not any((folder / name).is_file() for name in group):
            missing.append(" or ".join(group))
    return missing


def packed_files(folder: Path) -> list[Path]:
    """The folder's files that go into the artifact: one weights file + configs/tokenizer (sorted). Hidden
    files (the ``.cache`` folder of ``hf download --local-dir``), README, other frameworks' weights are left out."""
    chosen = next(folder / n for n in WEIGHT_FILES if (folder / n).is_file())
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix in PACKED_SUFFIXES]
    return sorted([*files, chosen], key=lambda p: p.name)


def pack(folder: Path, dst: Path) -> None:
    """A flat stored zip of ``packed_files`` with fixed timestamps and modes (same folder, same bytes);
    ZIP64 for weights over 2 GiB; streamed, so a 1-2 GB checkpoint is never held in memory."""
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for src in packed_files(folder):
            info = zipfile.ZipInfo(src.name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            size = src.stat().st_size
            info.file_size = size
            with open(src, "rb") as fh, zf.open(info, "w", force_zip64=size >= 2**31 - 1) as out:
                shutil.copyfileobj(fh, out, 1 << 20)


def to_model_input(img: Image.Image) -> np.ndarray:
    """uint8 [384,384,3]: BLIP's own preprocessing resizes to 384x384 (bicubic, aspect not kept)."""
    rgb = img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


class CaptionBlip(Model):
    name = "caption_blip"
    cpu_cost_ms = 3400  # docs/models.md throughput
    input_side = SIZE
    task = "captioning"
    version = "blip"  # + "-<sha256 prefix of the configured weights file>" (version_from_weights)
    source_package = "ARGUS_CAPTION__WEIGHTS (BLIP save_pretrained folder)"
    source_version = "operator-supplied"
    source_registry = "file"
    licence = "BSD-3-Clause (BLIP weights by Salesforce; check your checkpoint)"
    artifact = ARTIFACT
    build_params = {"format": "stored zip(save_pretrained folder: json/txt + one weights file)", "revision": 1}
    version_from_weights = True
    media_types = IMAGE_AND_VIDEO
    outputs = ["CAPTION", "SCORE"]
    max_batch = 8
    max_keyframes = 4  # BLIP-base on one CPU thread: 3-6 s per frame (docs/models.md)

    # ---- pull / verify ---------------------------------------------------------------------------
    def weights_dir(self) -> Path | None:
        d = self.settings.caption.weights
        return Path(d).expanduser() if d is not None else None

    def unavailable(self) -> str | None:
        """Why captioning cannot run here (None: it can)."""
        folder = self.weights_dir()
        if folder is None:
            return f"no BLIP weights configured: {HOW_TO}"
        if not folder.is_dir():
            return f"ARGUS_CAPTION__WEIGHTS={folder} is not a folder: {HOW_TO}"
        if missing := missing_files(folder):
            return f"{folder} is not a BLIP save_pretrained folder: missing {', '.join(missing)}"
        # the embedded Triton's python backend runs in this environment; an external Triton has its own image
        if self.settings.triton.url is None and importlib.util.find_spec("transformers") is None:
            return "transformers is not installed: pip install 'argus-media[caption]' (scripts/bootstrap.sh does)"
        return None

    def weights(self) -> Path:
        """The weights file inside the configured folder (its sha256 names the version)."""
        folder = self.weights_dir()
        if folder is None:
            raise FileNotFoundError(f"no BLIP weights configured: {HOW_TO}")
        for name in WEIGHT_FILES:
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(f"{folder}: none of {', '.join(WEIGHT_FILES)}")

    def build(self, dst: Path) -> None:
        """The configured folder, packed into ``dst``."""
        folder = self.weights_dir()
        why = self.unavailable()
        if folder is None or why is not None:
            raise FileNotFoundError(why)
        pack(folder, dst)

    def check(self, client: Any) -> CheckResult:
        """The cat photo through Triton: a non-empty caption and a score in 0..1. Whether it mentions a cat is
        reported, not required: the checkpoint is the operator's choice, and no real BLIP weights could be run
        where this was written (the tests use a tiny random BLIP)."""
        out = triton_infer(client, self.name, {"IMAGE": to_model_input(photo("chelsea"))[None]}, ["CAPTION", "SCORE"])
        text = out["CAPTION"][0, 0].decode("utf-8", "replace").strip()
        score = float(out["SCORE"][0, 0])
        cat = any(w in text.lower().split() for w in ("cat", "cats", "kitten", "kitty"))
        return CheckResult(bool(text) and 0.0 <= score <= 1.0,
                           f"cat photo: {text!r} (score {score:.2f}; mentions a cat: {'yes' if cat else 'no'})")

    # ---- the processor ---------------------------------------------------------------------------
    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        cfg = self.settings.caption
        params = {"MAX_NEW_TOKENS": np.array([cfg.max_new_tokens], np.int32),
                  "NUM_BEAMS": np.array([cfg.num_beams], np.int32)}
        return [Item(event, ms, {"IMAGE": to_model_input(img), **params})
                for ms, img in media_frames(self.settings, event, data, self.max_keyframes, target=self.input_side)]

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        result: list[AnnotationPayload] = []
        for i in range(n):
            raw = outputs["CAPTION"][i, 0]
            text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()
            score = round(min(1.0, max(0.0, float(outputs["SCORE"][i, 0]))), 5)
            result.append(Caption(text=text, score=score))
        return result
