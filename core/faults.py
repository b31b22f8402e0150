"""Named fault-injection points for crash tests (a deliberate, documented test hook).

A kill -9 from outside rarely lands inside the few-millisecond windows that matter most (after
a processor's outputs are acknowledged but before its offsets are committed; after a sink's
writes but before its transaction commits). ``ARGUS_FAULT=<point>:<n>`` makes the process die
with ``os._exit`` - no cleanup, like kill -9 - the n-th time it reaches ``<point>``. Unset in
production; the check is one dict lookup.
"""

from __future__ import annotations

import os
import sys

_counts: dict[str, int] = {}


def _spec() -> tuple[str, int] | None:
    raw = os.environ.get("ARGUS_FAULT")
    if not raw:
        return None
    point, _, n = raw.partition(":")
    return point, int(n or 1)


_SPEC = _spec()


def crash_point(point: str) -> None:
    if _SPEC is None or _SPEC[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= _SPEC[1]:
        sys.stderr.write(f"ARGUS_FAULT: crashing at {point} (hit {_counts[point]})\n")
        sys.stderr.flush()
        os._exit(137)
