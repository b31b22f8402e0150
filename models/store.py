"""The artifacts Triton loads, built from registry packages: ``argus models pull | list | verify``.

Weights come from registry packages (or files the operator configures), never from a model hub. ``pull``
builds ``triton_repo/<name>/1/<artifact>`` from the installed weights and records both hashes in
``1/MANIFEST.json``, so a second pull is a no-op and ``verify`` can check integrity before it sends each
model's known input through Triton.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tritonclient.http as httpclient

from core.settings import Settings
from models.base import CheckResult, Model, ModelUnavailable, sha256_file
from models.registry import all_models, enabled_models, get_model, triton_models, unavailable_models
from models.triton_backend import install_backend

__all__ = ["ModelRow", "PullResult", "VerifyReport", "list_models", "pull", "pull_all", "sha256_file", "verify"]


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


def _stale_reason(model: Model, weights_sha: str, version: str) -> str | None:
    """None when the artifact on disk was built from these weights with these parameters and is intact."""
    artifact = model.artifact_path
    if not artifact.exists():
        return f"{artifact.name} missing"
    manifest = model.manifest()
    if manifest is None:
        return "MANIFEST.json missing or unreadable"
    if manifest.get("version") != version or manifest.get("build") != model.build_params:
        return "built by another spec version"
    if manifest.get("source", {}).get("sha256") != weights_sha:
        return "source weights changed"
    if manifest.get("artifact", {}).get("sha256") != sha256_file(artifact):
        return f"{artifact.name} does not match its manifest (modified or corrupt)"
    return None


def pull(settings: Settings, name: str = "efficientnet_lite0", force: bool = False) -> PullResult:
    """Build ``triton_repo/<name>/1/<artifact>`` from the installed weights package, if missing or stale."""
    model = get_model(settings, name)
    started = time.monotonic()
    if (why := model.unavailable()) is not None:
        raise ModelUnavailable(f"{name}: {why}")
    install_backend(model.model_dir)
    weights = model.weights()
    weights_sha = sha256_file(weights)
    if model.version_from_weights:
        version = f"{model.version}-{weights_sha[:8]}"
    else:
        version = model.version
        expected = model.version.rsplit("-", 1)[-1]
        if not weights_sha.startswith(expected):
            raise RuntimeError(
                f"{weights} has sha256 {weights_sha[:16]}..., but {name} {model.version} expects {expected}...; "
                f"install {model.source_package}=={model.source_version}"
            )
    artifact = model.artifact_path
    reason = "forced" if force else _stale_reason(model, weights_sha, version)
    if reason is None:
        manifest = model.manifest() or {}
        return PullResult(name, version, artifact, "up-to-date", "artifact matches manifest",
                          manifest["artifact"]["sha256"], time.monotonic() - started)

    artifact.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{artifact.name}.", dir=artifact.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        model.build(tmp)
        artifact_sha = sha256_file(tmp)
        os.replace(tmp, artifact)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {
        "model": name,
        "version": version,
        "source": {
            "package": model.source_package,
            "package_version": model.source_version,
            "file": weights.name,
            "sha256": weights_sha,
            "licence": model.licence,
        },
        "artifact": {"file": artifact.name, "sha256": artifact_sha, "size": artifact.stat().st_size},
        "build": model.build_params,
        # no timestamp: the export is deterministic, so a re-pull with the same tools rewrites the same file
        "tools": {pkg: _dist_version(pkg) for pkg in ("torch", "onnx")},
    }
    _write_atomic(model.manifest_path, json.dumps(manifest, indent=2) + "\n")
    return PullResult(name, version, artifact, "exported", reason, artifact_sha, time.monotonic() - started)


def _dist_version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def artifact_intact(model: Model) -> bool:
    artifact = model.artifact_path
    manifest = model.manifest()
    return (
        artifact.exists()
        and manifest is not None
        and (model.version_from_weights or manifest.get("version") == model.version)
        and manifest.get("artifact", {}).get("sha256") == sha256_file(artifact)
    )


def list_models(settings: Settings) -> list[ModelRow]:
    rows = []
    for model in all_models(settings):
        if not model.served_by_triton:  # computed in its processor: nothing to pull
            rows.append(ModelRow(model.name, model.task, model.model_version, model.source, model.licence, None, True))
            continue
        artifact = model.artifact_path
        why = model.unavailable()
        intact = why is None and artifact_intact(model)
        rows.append(ModelRow(
            name=model.name,
            task=model.task,
            version=model.model_version if intact else model.version,
            source=model.source,
            licence=model.licence,
            size_bytes=artifact.stat().st_size if artifact.exists() else None,
            available=intact,
            reason=why or ("" if intact else "not pulled (run `argus models pull`)"),
        ))
    return rows


def verify(settings: Settings, triton_url: str | None = None, names: list[str] | None = None) -> VerifyReport:
    """Check each model's artifact against its manifest, then send its known input through Triton."""
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
            for name, reason in unavailable_models(settings, enabled_models(settings)).items():
                lines.append(f"skip {name}: unavailable: {reason}")
        for name in names or triton_models(settings):
            model = get_model(settings, name)
            if (why := model.unavailable()) is not None:
                lines.append(f"FAIL {name}: unavailable: {why}")
                ok = False
                continue
            intact = artifact_intact(model)
            lines.append(
                f"{'ok  ' if intact else 'FAIL'} {name}: {model.artifact} "
                f"{'matches MANIFEST sha256' if intact else 'missing or modified (run pull)'}"
            )
            ok &= intact
            result = _check(client, model)
            if result is None:
                lines.append(f"FAIL {name}: not loaded in Triton")
                ok = False
                continue
            lines.append(f"{'ok  ' if result.ok else 'FAIL'} {name} ({model.model_version}): {result.detail}")
            ok &= result.ok
    finally:
        client.close()
    return VerifyReport(ok, lines)


def _check(client: Any, model: Model) -> CheckResult | None:
    try:
        if not client.is_model_ready(model.name):
            return None
        return model.check(client)
    except Exception as exc:  # noqa: BLE001 - a failed inference is a failed check, with its reason
        return CheckResult(False, f"inference failed: {exc}")


def pull_all(settings: Settings, force: bool = False) -> list[PullResult]:
    """Pull every model the embedded Triton is configured to load."""
    return [pull(settings, name, force=force) for name in triton_models(settings)]
