"""The production stack (compose/) checked without a container engine: the file validates against the
Compose Specification JSON Schema (vendored in compose/schema/), every Argus service is configured with
settings that exist in core/settings.py, every model has a scalable processor, Triton uses the
production configs on the GPU, Prometheus scrapes every worker; `docker-compose config -q` runs too where
the Debian docker-compose package is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic import BaseModel

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose" / "docker-compose.yml"
INFRA = {"kafka", "minio", "postgres", "opensearch", "triton", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]  # YAML merge keys resolved


def argus_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in spec["services"].items() if n not in INFRA}


def test_validates_against_the_compose_spec_schema(spec: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "compose" / "schema" / "compose-spec.json").read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(spec), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:10])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian docker-compose not installed")
def test_docker_compose_config_accepts_it() -> None:
    r = subprocess.run(["docker-compose", "-f", str(COMPOSE), "--env-file", str(ROOT / "compose" / ".env.example"),
                        "config", "-q"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _resolves(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    sub = field.annotation
    return isinstance(sub, type) and issubclass(sub, BaseModel) and _resolves(sub, path[1:])


def test_every_argus_variable_is_a_real_setting(spec: dict[str, Any]) -> None:
    for name, svc in argus_services(spec).items():
        env = svc["environment"]
        for key in env:
            if key.startswith("ARGUS_"):
                path = key[len("ARGUS_"):].lower().split("__")
                assert _resolves(Settings, path), f"{name}: {key} is not a field of core.settings.Settings"
        # the literal (non-interpolated) values parse as Settings would read them
        models = json.loads(env["ARGUS_MODELS"])
        assert set(models) == set(Settings().models), "compose runs exactly the default model set"


def test_each_model_has_a_scalable_processor_and_the_workers_are_all_there(spec: dict[str, Any]) -> None:
    services = spec["services"]
    assert set(services) >= INFRA
    models = json.loads(services["api"]["environment"]["ARGUS_MODELS"])
    expected = {f"processor-{m}" for m in models} | {"api", "relay", "sink-postgres", "sink-search", "sink-ndd",
                                                     "migrate", "models-init"}
    assert set(argus_services(spec)) == expected
    for m in models:
        svc = services[f"processor-{m}"]
        assert svc["command"] == ["run", "processor", m]
        assert "container_name" not in svc and "ports" not in svc, "scalable: no fixed name or host port"
    assert services["relay"]["command"] == ["run", "relay"]
    for name in ("sink-postgres", "sink-search", "sink-ndd"):
        assert services[name]["command"] == ["run", "sink", name.split("-", 1)[1]]
        assert "container_name" not in services[name]
    assert services["migrate"]["command"] == ["migrate"]
    for name, svc in argus_services(spec).items():
        if name not in ("migrate", "models-init"):
            assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_triton_uses_the_production_configs_on_the_gpu(spec: dict[str, Any]) -> None:
    triton = spec["services"]["triton"]
    cmd = " ".join(triton["command"])
    assert "--model-repository=/models" in cmd and "--model-config-name" not in cmd
    assert "triton-repo:/models:ro" in triton["volumes"]
    assert triton["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    base = (ROOT / "compose" / "triton.Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3$", base, re.M)
    assert "triton-repo:/app/triton_repo" in spec["services"]["models-init"]["volumes"]
    for model_dir in (ROOT / "triton_repo").iterdir():
        if (model_dir / "config.pbtxt").exists():
            assert "backend:" in (model_dir / "config.pbtxt").read_text()


def test_images_are_pinned_and_search_backends_configured(spec: dict[str, Any]) -> None:
    for name in INFRA - {"triton"}:
        image = spec["services"][name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image})"
    assert spec["services"]["postgres"]["image"].startswith("pgvector/pgvector:")
    assert spec["services"]["opensearch"]["image"].startswith("opensearchproject/opensearch:2.")
    assert spec["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    env = spec["services"]["api"]["environment"]
    assert env["ARGUS_API_KEYS"] == "[]", "no dev key in production"


def test_prometheus_scrapes_every_worker(spec: dict[str, Any]) -> None:
    prom = yaml.safe_load((ROOT / "compose" / "prometheus.yml").read_text())
    names = {n for job in prom["scrape_configs"] for sd in job.get("dns_sd_configs", []) for n in sd["names"]}
    workers = set(argus_services(spec)) - {"migrate", "models-init"}
    assert names == workers
    for name in workers:
        assert spec["services"][name]["environment"]["ARGUS_OBSERVABILITY__PORT"] == "9400"


def test_dockerfile_copies_what_exists() -> None:
    text = (ROOT / "compose" / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / src).exists(), src
    assert 'ENTRYPOINT ["argus"]' in text
