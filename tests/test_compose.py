"""The production stack (compose/) checked without a container engine: docker-compose.yml and the generated
processors.generated.yml (`argus deploy render`) validate against the Compose Specification JSON Schema
(vendored in compose/schema/), every Argus service is configured with settings that exist in
core/settings.py, every registered model with a processor has a scalable processor service, Triton uses the
production configs on the GPU, every host path compose mounts exists, and the Prometheus config compose
really mounts scrapes every worker; `docker-compose config -q` runs too where the Debian docker-compose
package is installed."""

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

from argus.deploy import processor_models
from core.settings import Settings
from models.registry import default_models

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose" / "docker-compose.yml"
GENERATED = ROOT / "compose" / "processors.generated.yml"  # `argus deploy render`; used with -f beside COMPOSE
FILES = (COMPOSE, GENERATED)
INFRA = {"kafka", "minio", "postgres", "opensearch", "triton", "prometheus", "grafana"}


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]  # YAML merge keys resolved


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The project `docker compose -f docker-compose.yml -f processors.generated.yml` runs: the files' services
    together (the generated file only adds services, it overrides none)."""
    main, generated = _load(COMPOSE), _load(GENERATED)
    assert not set(main["services"]) & set(generated["services"]), "the generated file must not override"
    return {**main, "services": {**main["services"], **generated["services"]}}


def argus_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in spec["services"].items() if n not in INFRA}


def mounted(spec: dict[str, Any], service: str, container_path: str) -> Path:
    """The host file behind ``container_path`` in ``service``, through its bind mounts (longest match)."""
    binds = [v.split(":")[:2] for v in spec["services"][service].get("volumes", []) if v.startswith((".", "/"))]
    for host, target in sorted(binds, key=lambda b: -len(b[1])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return (COMPOSE.parent / host / Path(container_path).relative_to(target)).resolve()
    raise AssertionError(f"{service} does not mount {container_path}")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_validates_against_the_compose_spec_schema(spec: dict[str, Any], path: Path) -> None:
    schema = json.loads((ROOT / "compose" / "schema" / "compose-spec.json").read_text())
    for doc in (_load(path), spec):
        errors = sorted(Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:10])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian docker-compose not installed")
def test_docker_compose_config_accepts_it() -> None:
    r = subprocess.run(["docker-compose", "-f", str(COMPOSE), "-f", str(GENERATED),
                        "--env-file", str(ROOT / "compose" / ".env.example"), "config", "-q"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_every_mounted_host_path_exists(spec: dict[str, Any]) -> None:
    for name, svc in spec["services"].items():
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith((".", "/")):  # a bind mount (named volumes are created by compose)
                assert (COMPOSE.parent / host).exists(), f"{name} mounts {host}, which does not exist"


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
        # ARGUS_MODELS is unset on purpose: the registry's default model set applies
        assert "ARGUS_MODELS" not in env, f"{name}: the default model set comes from the registry"


def test_each_model_has_a_scalable_processor_and_the_workers_are_all_there(spec: dict[str, Any]) -> None:
    services = spec["services"]
    assert set(services) >= INFRA
    models = list(processor_models(Settings()))
    assert set(default_models(Settings())) <= set(models)
    expected = {f"processor-{m}" for m in models} | {"api", "relay", "sink-postgres", "sink-search", "sink-ndd",
                                                     "sink-people", "sink-aggregate", "sink-lifecycle",
                                                     "webhooks", "grpc",
                                                     "migrate", "models-init"}
    assert set(argus_services(spec)) == expected
    for m in models:
        svc = services[f"processor-{m}"]
        assert svc["command"] == ["run", "processor", m]
        assert "container_name" not in svc and "ports" not in svc, "scalable: no fixed name or host port"
    assert services["relay"]["command"] == ["run", "relay"]
    for name in ("sink-postgres", "sink-search", "sink-ndd", "sink-people", "sink-aggregate", "sink-lifecycle"):
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


def test_the_prometheus_config_compose_mounts_scrapes_every_worker(spec: dict[str, Any]) -> None:
    config = next(a.split("=", 1)[1] for a in spec["services"]["prometheus"]["command"] if a.startswith("--config"))
    prom = yaml.safe_load(mounted(spec, "prometheus", config).read_text())
    jobs = list(prom["scrape_configs"])
    for extra in prom.get("scrape_config_files", []):  # the generated processors' job
        jobs += yaml.safe_load(mounted(spec, "prometheus", extra).read_text())["scrape_configs"]
    for rules in prom.get("rule_files", []):
        assert mounted(spec, "prometheus", rules).exists(), rules
    targets = {(n, sd["port"]) for job in jobs for sd in job.get("dns_sd_configs", []) for n in sd["names"]}
    workers = set(argus_services(spec)) - {"migrate", "models-init"}
    assert {n for n, _ in targets} == workers
    assert {f"processor-{m}" for m in processor_models(Settings())} <= {n for n, _ in targets}
    for name, port in targets:
        if name != "api":  # the API serves /metrics on its HTTP port
            assert spec["services"][name]["environment"]["ARGUS_OBSERVABILITY__PORT"] == str(port), name
    assert ("api", 8080) in targets


def test_dockerfile_copies_what_exists() -> None:
    text = (ROOT / "compose" / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / src).exists(), src
    assert 'ENTRYPOINT ["argus"]' in text
