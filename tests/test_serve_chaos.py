"""The fast part of the chaos run against ``argus serve`` (the long run: ``python -m benchmarks.serve_chaos``;
docs/reliability.md).

A real ``argus serve`` (every default worker for two models, the aggregate, the webhook deliverer, the API) on the
session's servers; while assets are uploaded through its API, kill -9 hits the supervisor itself and one worker of
each kind. Afterwards: every annotation and search document exactly once (argus.verify), exactly one distinct
``assets.annotated`` event per asset (re-emissions byte-identical), every event delivered to a signed webhook
receiver, every killed component back. The API's availability is printed, not asserted (a figure, not a check).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from argus.stack.ports import free_ports
from benchmarks.chaos import make_assets
from benchmarks.serve_chaos import SUPERVISOR, ServeChaos
from core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KILLED = [SUPERVISOR, "processor-pdq", "processor-efficientnet_lite0", "relay", "sink-search", "sink-aggregate",
          "webhooks", "api"]


def test_serve_survives_kill_9_of_workers_and_supervisor(env: Settings, tmp_path: Path) -> None:
    s = env.model_copy(deep=True)
    s.state_dir = tmp_path / "state"  # the service's state file, lock and logs; the servers are the session's
    s.models = ["efficientnet_lite0", "pdq"]
    s.ports.api = free_ports(1)[0]
    s.annotate.grpc_enabled = False
    s.webhooks.allow_networks = ["127.0.0.0/8"]  # the receiver runs in this process
    s.webhooks.backoff_initial_s = 1.0
    run = ServeChaos(s, make_assets(12, seed=16), duration_s=10.0, seed=16, components=KILLED, manage_stack=False,
                     supervisor_down_s=(0.5, 1.5), gap_s=(0.5, 1.5), recover_timeout_s=120.0,
                     drain_timeout_s=300.0)
    report = run.run()
    f = report.figures()
    print(f"\nserve chaos figures: {f}")
    assert set(f["kills"]) == set(KILLED), f["kills"]
    assert not f["not_recovered"], f["not_recovered"]
    assert f["verified"], f["problems"]
    assert f["missing"] == 0 and f["duplicated"] == 0
    a, w = f["annotated"], f["webhooks"]
    assert a["assets_with_one_distinct_event"] == 12, a
    assert a["re_emissions_differing"] == 0, a
    assert w["events_never_delivered"] == 0 and w["distinct_events_delivered"] == 12, w
    assert w["bad_signatures"] == 0, w
    assert not f["degraded_at_end"], f["degraded_at_end"]
