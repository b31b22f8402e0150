"""The search index's newest-wins merge: replays and out-of-order delivery converge."""

from __future__ import annotations

from functools import reduce
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sinks.search.interface import is_newer

entries = st.builds(
    lambda t, i: {"produced_at": f"2026-01-01T00:00:{t:02d}", "annotation_id": f"{i:04d}"},
    st.integers(0, 59), st.integers(0, 50),
)


def fold(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    return reduce(lambda cur, e: e if is_newer(cur, e) else cur, events, None)


@given(st.lists(entries, min_size=1, max_size=20), st.randoms())
def test_any_order_and_replays_give_the_same_result(events: list[dict[str, Any]], rnd: Any) -> None:
    shuffled = events + events[: len(events) // 2]  # replays
    rnd.shuffle(shuffled)
    assert fold(shuffled) == fold(events) == max(events, key=lambda e: (e["produced_at"], e["annotation_id"]))


@given(entries, entries)
def test_an_older_event_never_overwrites_a_newer_one(a: dict[str, Any], b: dict[str, Any]) -> None:
    newer, older = sorted([a, b], key=lambda e: (e["produced_at"], e["annotation_id"]), reverse=True)
    assert not is_newer(newer, older) or newer == older
