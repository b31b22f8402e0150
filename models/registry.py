"""The models Argus knows: one line each. Everything else (processors, Triton's load list, compose services,
Prometheus targets, the default model set) follows from this list.

Adding a model: ``triton_repo/<name>/`` + a ``Model`` subclass in ``models/<name>.py`` + one line in ``MODELS``
(CONTRIBUTING.md walks through an example). An installation can add models without editing this file by naming
their classes in ``ARGUS_MODEL_PLUGINS`` (``["package.module:Class"]``).
"""

from __future__ import annotations

import importlib
from functools import cache

from core.placement import ModelPlacement, has_threads, plan, shipped_instances, usable_cores
from core.settings import Settings
from models.base import Model
from models.caption_blip import CaptionBlip
from models.clip import Clip, ClipText
from models.coco_centernet import CocoCenternet
from models.efficientnet_lite0 import EfficientNetLite0
from models.face_embed import FaceEmbed
from models.face_mtcnn import FaceMtcnn
from models.media_metadata import MediaMetadataModel
from models.nsfw_nudenet import NsfwNudenet
from models.ocr_ppocr import OcrPpocr
from models.pdq import PdqHasher
from models.renditions import Renditions
from models.speech_whisper import SpeechWhisper
from models.text_embed import TextEmbed

MODELS: tuple[type[Model], ...] = (
    EfficientNetLite0,
    PdqHasher,
    FaceMtcnn,
    FaceEmbed,
    OcrPpocr,
    CocoCenternet,
    NsfwNudenet,
    Clip,
    ClipText,
    CaptionBlip,
    TextEmbed,
    Renditions,
    SpeechWhisper,
    MediaMetadataModel,
)


@cache
def _plugin(path: str) -> type[Model]:
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ValueError(f"model plugin {path!r} is not a models.base.Model subclass")
    return cls


def model_classes(settings: Settings) -> dict[str, type[Model]]:
    """name -> class: the built-in models, then the installation's plugins."""
    classes = [*MODELS, *(_plugin(p) for p in settings.model_plugins)]
    return {cls.name: cls for cls in classes}


def get_model(settings: Settings, name: str) -> Model:
    classes = model_classes(settings)
    if name not in classes:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(classes))}")
    return classes[name](settings)


def all_models(settings: Settings) -> list[Model]:
    return [cls(settings) for cls in model_classes(settings).values()]


def default_models(settings: Settings) -> list[str]:
    """The models whose processors run when ``Settings.models`` is not set."""
    return [n for n, cls in model_classes(settings).items() if cls.default and cls.consumes != "nothing"]


def enabled_models(settings: Settings) -> list[str]:
    """The annotation models this installation runs (``ARGUS_MODELS``, or the defaults)."""
    return list(settings.models) if settings.models is not None else default_models(settings)


def with_companions(settings: Settings, names: list[str]) -> list[str]:
    """``names`` plus the companion models they need in Triton (after them, without duplicates)."""
    classes = model_classes(settings)
    out = list(names)
    out += [c for n in names if n in classes for c in classes[n].companions if c not in out]
    return list(dict.fromkeys(out))


def unavailable_models(settings: Settings, names: list[str]) -> dict[str, str]:
    """{model: why} for those of ``names`` that cannot run on this installation (registered models only)."""
    classes = model_classes(settings)
    return {n: why for n in names if n in classes and (why := classes[n](settings).unavailable()) is not None}


def triton_models(settings: Settings) -> list[str]:
    """What the embedded Triton loads: ``triton.models`` if set, else the enabled models served by Triton and
    their companions, less those unavailable here."""
    if settings.triton.models is not None:
        return settings.triton.models
    classes = model_classes(settings)
    candidates = [m for m in with_companions(settings, enabled_models(settings))
                  if m in classes and classes[m].served_by_triton]
    skip = unavailable_models(settings, candidates)  # no weights configured / optional extra missing
    return [m for m in candidates if m not in skip]


def placement(settings: Settings) -> dict[str, ModelPlacement]:
    """Instances, ORT threads and processors per Triton-served model on this host (core/placement.py). Every model
    with a shipped ``configs/cpu.pbtxt`` is placed (tests load extra models later); the cores are shared among the
    models this installation runs, the others keep their shipped floor."""
    classes = model_classes(settings)
    configs: dict[str, str] = {}
    for name, cls in classes.items():
        path = settings.triton_repo / name / "configs" / "cpu.pbtxt"
        if cls.served_by_triton and path.exists():
            configs[name] = path.read_text()
    floors = {n: shipped_instances(c) for n, c in configs.items()}
    threaded = {n: has_threads(c) for n, c in configs.items()}
    running = [n for n in triton_models(settings) if n in configs]
    placed = plan(settings.triton.cores or usable_cores(), {n: classes[n].cpu_cost_ms for n in running},
                  floors=floors, threaded=threaded, infer_concurrency=settings.processor.infer_concurrency,
                  partitions=settings.kafka.partitions)
    return {n: placed.get(n) or ModelPlacement(floors[n], 1, 1) for n in configs}


def processor_instances(settings: Settings, model: str) -> int:
    """``processor.instances`` if set, else the placement's (1 for models Triton does not serve)."""
    if settings.processor.instances is not None:
        return settings.processor.instances
    placed = placement(settings).get(model) if settings.triton.placement == "auto" else None
    return placed.processors if placed is not None else 1


def repo_problems(settings: Settings) -> list[str]:
    """Mismatches between the registry and the folders of ``triton_repo`` (empty list: consistent)."""
    served = {n for n, cls in model_classes(settings).items() if cls.served_by_triton}
    folders = {p.name for p in settings.triton_repo.iterdir() if (p / "config.pbtxt").exists()}
    problems = [f"{name}: registered but triton_repo/{name}/config.pbtxt is missing"
                for name in sorted(served - folders)]
    problems += [f"{name}: triton_repo folder without a registry entry" for name in sorted(folders - served)]
    return problems


def check_repo(settings: Settings) -> None:
    """Raise when the registry and ``triton_repo`` disagree (at ``up`` and at processor start)."""
    if problems := repo_problems(settings):
        raise RuntimeError("the model registry and triton_repo/ disagree:\n  " + "\n  ".join(problems))
