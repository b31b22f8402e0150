#!/usr/bin/env bash
# The main job: embedded stack up, sample photos ingested, annotated on Triton, indexed, searched.
# Extra arguments go to `argus demo` (e.g. --exit to stop after the searches).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/argus demo "$@"
