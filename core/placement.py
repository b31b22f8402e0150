"""CPU placement: how many Triton instances, ORT threads and processor processes each model gets, from the
cores this host has, so a 2-core laptop and a 32-core server both run near their limit without hand tuning.

The formula (docs/benchmarks.md "CPU placement"):

* C = usable cores (the process's CPU affinity, or ``triton.cores``); each Triton-served model m has a
  measured cost w_m (``Model.cpu_cost_ms``: in-process ms per item on one core, benchmarks.models).
* Its thread budget is its share of the cores by cost: b_m = max(1, round(C * w_m / sum(w))).
* Up to 4 threads a model runs b_m single-threaded instances (independent batches in parallel beat one
  multi-threaded session on small CPU models: docs/models.md measured 1.45x for EfficientNet on 2 cores);
  beyond that, 4 instances of ceil(b_m / 4) ORT threads each. A model without an ORT thread setting (dlib)
  takes its whole budget as instances, up to 8.
* Never fewer instances than the shipped ``configs/cpu.pbtxt`` has: those are tuned (and measured) for a 2-core
  machine, and a host of up to 4 cores runs them unchanged.
* Its processor runs ceil(instances / infer_concurrency) processes (at most the topic's partitions), so its
  requests keep every instance busy.

On this 2-core machine the placement is exactly the shipped configs; with the default set, 8 cores give OCR and
speech 3 instances each, 32 cores OCR 4 instances x 3 threads and each face model 3 (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_INSTANCES = 4
SMALL_HOST = 4  # cores up to which the shipped configs run as they are
MAX_SINGLE_THREAD_INSTANCES = 8
_GROUP = re.compile(r"instance_group\s*\[.*?\]", re.S)
_COUNT = re.compile(r"count\s*:\s*(\d+)")
_THREADS = re.compile(r'parameters\s*\{\s*key:\s*"intra_op_threads"\s*value:\s*\{\s*string_value:\s*"\d+"\s*\}\s*\}')


@dataclass(frozen=True)
class ModelPlacement:
    instances: int  # Triton instance_group count
    threads: int  # ORT intra-op threads per instance
    processors: int  # processor processes in the model's consumer group


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan(cores: int, costs: Mapping[str, float], *, floors: Mapping[str, int] | None = None,
         threaded: Mapping[str, bool] | None = None, infer_concurrency: int = 2,
         partitions: int = 4) -> dict[str, ModelPlacement]:
    """``costs``: model -> cpu_cost_ms of the Triton-served models that run here; ``floors``: their shipped instance
    counts; ``threaded``: whether the model has an ORT thread setting (default True)."""
    total = sum(max(c, 0.1) for c in costs.values()) or 1.0
    out: dict[str, ModelPlacement] = {}
    for name, cost in costs.items():
        budget = 1 if cores <= SMALL_HOST else max(1, round(cores * max(cost, 0.1) / total))
        floor = (floors or {}).get(name, 1)
        if (threaded or {}).get(name, True):
            instances = max(floor, min(budget, MAX_INSTANCES))
            threads = max(1, math.ceil(budget / instances))
        else:
            instances, threads = max(floor, min(budget, MAX_SINGLE_THREAD_INSTANCES)), 1
        processors = min(partitions, max(1, math.ceil(instances / max(1, infer_concurrency))))
        out[name] = ModelPlacement(instances, threads, processors)
    return out


def shipped_instances(config: str) -> int:
    group = _GROUP.search(config)
    count = _COUNT.search(group.group(0)) if group else None
    return int(count.group(1)) if count else 1


def has_threads(config: str) -> bool:
    return _THREADS.search(config) is not None


def apply_to_config(config: str, placement: ModelPlacement) -> str:
    """A Triton config (configs/cpu.pbtxt) with the placement's instance count and ORT threads."""
    config = _GROUP.sub(f"instance_group [ {{ count: {placement.instances} }} ]", config, count=1)
    return _THREADS.sub(f'parameters {{ key: "intra_op_threads" value: {{ string_value: "{placement.threads}" }} }}',
                        config, count=1)
