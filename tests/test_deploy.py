"""Deployment files generated from the model registry (argus/deploy.py, `argus deploy render`): the committed
files are current, and a model added to the registry gets a processor service and a Prometheus target."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

import models.registry
from argus import deploy
from core.settings import Settings
from models.base import Model

ROOT = Path(__file__).resolve().parent.parent


class EchoModel(Model):
    """A registered model that exists only in this test."""

    name: ClassVar[str] = "echo_test"
    task: ClassVar[str] = "classification"
    version: ClassVar[str] = "echo-1"
    outputs: ClassVar[list[str]] = ["out"]


class EchoCompanion(EchoModel):
    name: ClassVar[str] = "echo_companion"
    consumes = "nothing"


def test_committed_deployment_files_are_current() -> None:
    for path, text in deploy.render(Settings()).items():
        assert (ROOT / path).exists(), f"{path} missing: run `argus deploy render`"
        assert (ROOT / path).read_text() == text, f"{path} is stale: run `argus deploy render`"
    assert deploy.stale(Settings()) == []


def _rendered(settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = deploy.render(settings)
    compose = yaml.safe_load(out[deploy.COMPOSE_PROCESSORS])
    return compose["services"], yaml.safe_load(out[deploy.PROMETHEUS_PROCESSORS])["scrape_configs"]


def test_the_shared_settings_are_those_of_the_main_compose_file() -> None:
    main = yaml.safe_load((ROOT / deploy.COMPOSE_MAIN).read_text())
    services, _ = _rendered(Settings())
    for name, svc in services.items():
        assert {k: v for k, v in svc.items() if k not in ("command", "depends_on", "profiles")} == \
            {k: v for k, v in main["x-argus"].items() if k != "depends_on"}, name


def test_a_registered_model_gets_a_processor_service_and_a_scrape_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.registry, "MODELS", (*models.registry.MODELS, EchoModel, EchoCompanion))
    services, jobs = _rendered(Settings())
    svc = services["processor-echo_test"]
    assert svc["command"] == ["run", "processor", "echo_test"]
    assert svc["depends_on"]["triton"] == {"condition": "service_healthy"}
    assert "profiles" not in svc  # default model: runs without a profile
    assert "processor-echo_companion" not in services  # consumes nothing: no processor
    names = {n for job in jobs for sd in job["dns_sd_configs"] for n in sd["names"]}
    assert "processor-echo_test" in names and "processor-echo_companion" not in names
    assert set(names) == set(services)
    # and the committed files are stale now
    assert deploy.stale(Settings()) == [deploy.COMPOSE_PROCESSORS, deploy.PROMETHEUS_PROCESSORS]


def test_a_plugin_model_is_rendered_too() -> None:
    settings = Settings(model_plugins=["test_deploy:EchoModel"])
    services, jobs = _rendered(settings)
    assert services["processor-echo_test"]["command"] == ["run", "processor", "echo_test"]
    assert "processor-echo_test" in jobs[0]["dns_sd_configs"][0]["names"]


def test_non_default_and_weights_needing_models_get_a_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    class OptionalModel(EchoModel):
        name: ClassVar[str] = "echo_optional"
        default = False

    monkeypatch.setattr(models.registry, "MODELS", (*models.registry.MODELS, OptionalModel))
    services, _ = _rendered(Settings())
    assert services["processor-echo_optional"]["profiles"] == ["echo_optional"]
    assert services["processor-clip"]["profiles"] == ["clip"]
    assert services["processor-caption_blip"]["profiles"] == ["caption"]
    assert "depends_on" in services["processor-pdq"] and "triton" not in services["processor-pdq"]["depends_on"]


def test_cli_check_reports_stale_files(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from argus.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["deploy", "render", "--check"]).exit_code == 0
    monkeypatch.setattr(models.registry, "MODELS", (*models.registry.MODELS, EchoModel))
    result = runner.invoke(app, ["deploy", "render", "--check"])
    assert result.exit_code == 1 and "processors.generated.yml" in result.output
    assert "echo_test" not in (ROOT / deploy.COMPOSE_PROCESSORS).read_text(), "--check writes nothing"
