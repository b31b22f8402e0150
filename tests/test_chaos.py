"""The fast part of the chaos suite (the long run: ``python -m benchmarks.chaos``; docs/reliability.md).

Kill -9, at random moments, every worker (processor, both sinks, outbox relay) and every server that
holds state or does work (Triton, PostgreSQL, the durable broker) while assets stream in; restart
them; then the verifier reads back every asset, row, search document and offset. The session's
servers are restarted and healthy again before the test ends (ChaosRun's finally)."""

from __future__ import annotations

import pytest

from benchmarks.chaos import SERVERS, ChaosRun, make_assets
from core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_chaos_kill_9_every_component(env: Settings, stack) -> None:  # type: ignore[no-untyped-def]
    # CI budget: a Triton model and a local one (pdq, with its ndd sink); the long run takes every model
    env.models = ["efficientnet_lite0", "pdq"]
    run = ChaosRun(env, stack, make_assets(60, seed=11), duration_s=45.0, seed=11, down_s=(0.2, 1.5),
                   gap_s=(0.5, 2.0), recover_timeout_s=90.0, drain_timeout_s=300.0)
    report = run.run()
    figures = report.figures()
    print(f"\nchaos figures: {figures}")
    kills = report.kills()
    assert set(kills) == {*run.sup.workers, *SERVERS}, f"every component killed at least once: {kills}"
    assert report.verdict is not None
    assert report.verdict.ok, report.verdict.problems
    assert figures["missing"] == 0 and figures["duplicated"] == 0
    for name in SERVERS:
        assert stack.service(name).healthy(), f"{name} left unhealthy"
