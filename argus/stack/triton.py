"""NVIDIA Triton 2.51 (``tritonserver`` from PyPI ``nvidia-pytriton==0.7.0``): CPU, python backend.

Launched directly, not through PyTriton's ``Triton`` class (which generates its own model store and
adds a ZMQ hop). See /work/shared/notes/triton.md, Recommendation (b).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from argus.stack.base import Service
from core.packages import package_dir
from core.placement import apply_to_config
from models.registry import placement, triton_models
from models.triton_backend import install_backend


def find_pytriton_root() -> Path:
    """``<site-packages>/pytriton`` without importing pytriton (its import is slow and not needed)."""
    return package_dir("pytriton", "tritonserver not found: pip install nvidia-pytriton==0.7.0").resolve()


class TritonService(Service):
    name = "triton"
    start_timeout_s = 120.0  # torch/onnx models import for seconds; several models load in sequence
    stop_timeout_s = 30.0  # --exit-timeout-secs=5 plus unloading python stubs (~5 s measured)

    @property
    def server_dir(self) -> Path:
        return find_pytriton_root() / "tritonserver"

    @property
    def libs_dir(self) -> Path:
        return find_pytriton_root().parent / "nvidia_pytriton.libs"

    @property
    def backends_dir(self) -> Path:
        return self.data_dir / "backends"

    def binary(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"

    @property
    def models(self) -> list[str]:
        """The models this server loads (``--load-model``)."""
        return triton_models(self.settings)

    @property
    def http_port(self) -> int:
        return self.settings.ports.triton_http

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ports(self) -> Mapping[str, int]:
        p = self.settings.ports
        return {"http": p.triton_http, "grpc": p.triton_grpc, "metrics": p.triton_metrics}

    def args(self) -> list[str]:
        p = self.settings.ports
        args = [
            f"--model-repository={self.settings.triton_repo}",
            f"--backend-directory={self.backends_dir}",
            f"--cache-directory={self.server_dir / 'caches'}",
            "--http-address=127.0.0.1",
            f"--http-port={p.triton_http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={p.triton_grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={p.triton_metrics}",
            # auto-complete imports every model.py twice (13 s instead of 2-4 s for a torch model)
            "--disable-auto-complete-config",
            # an open keep-alive client connection otherwise holds shutdown for 30 s
            "--exit-timeout-secs=5",
            "--model-control-mode=explicit",
            f"--model-config-name={self.config_name}",
        ]
        args += [f"--load-model={model}" for model in self.models]
        return args

    @property
    def config_name(self) -> str:
        """``cpu-auto`` (written by ``write_placement``) when the CPU configs are sized from the cores."""
        name = self.settings.triton.model_config_name
        return f"{name}-auto" if name == "cpu" and self.settings.triton.placement == "auto" else name

    def write_placement(self) -> None:
        """configs/cpu-auto.pbtxt for every model: configs/cpu.pbtxt with the instances and ORT threads of this host
        (core/placement.py; identical for every stack on the host, written atomically, git-ignored)."""
        if self.config_name == self.settings.triton.model_config_name:
            return
        for name, placed in placement(self.settings).items():
            folder = self.settings.triton_repo / name / "configs"
            text = apply_to_config((folder / "cpu.pbtxt").read_text(), placed)
            target = folder / f"{self.config_name}.pbtxt"
            if not target.exists() or target.read_text() != text:
                tmp = target.with_name(f".{target.name}.{os.getpid()}")
                tmp.write_text(text)
                tmp.replace(target)

    def env(self) -> dict[str, str]:
        env = super().env()
        # the stub must load THIS interpreter's libpython (not e.g. Debian's 3.11.2), so LIBDIR first
        env["LD_LIBRARY_PATH"] = f"{sysconfig.get_config_var('LIBDIR')}:{self.libs_dir}"
        # the embedded interpreter finds the venv (pyvenv.cfg, site-packages) through `python3` on PATH
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
        return env

    def prepare(self) -> None:
        repo, models = self.settings.triton_repo, self.models
        missing = [m for m in models if not (repo / m).is_dir()]
        if missing:
            raise self._error(f"model(s) {', '.join(missing)} not found in the model repository {repo}")
        # the shared python-backend execute loop: model.py imports it from its model folder (triton_repo/README.md)
        for model in models:
            install_backend(repo / model)
        self.write_placement()
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise self._error(f"no python backend stub for Python {version} in {stub.parent.parent}")
        libpython = Path(str(sysconfig.get_config_var("LIBDIR"))) / f"libpython{version}.so.1.0"
        if not libpython.exists():
            raise self._error(f"the python backend needs a shared libpython ({libpython} is missing)")
        # per-interpreter backend dir: the wheel keeps stubs per Python version and triton looks for
        # python/triton_python_backend_stub, so link the backend files and copy the matching stub
        python_dir = self.backends_dir / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        src = self.server_dir / "backends" / "python"
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            link = python_dir / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(src / name)
        target = python_dir / "triton_python_backend_stub"
        tmp = target.with_suffix(".tmp")
        shutil.copy2(stub, tmp)  # refreshed each start: the venv's Python may have changed
        tmp.replace(target)

    def _get(self, path: str) -> int:
        # urllib sends "Connection: close", so no keep-alive socket delays the server's shutdown
        try:
            with urllib.request.urlopen(f"{self.endpoint}{path}", timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def check_health(self) -> bool:
        status = self._get("/v2/health/ready")
        if status != 200:
            self._last_health_error = f"/v2/health/ready returned {status}"
            return False
        for model in self.models:
            status = self._get(f"/v2/models/{model}/ready")
            if status != 200:
                self._last_health_error = f"model {model!r} not ready (HTTP {status})"
                return False
        return True
