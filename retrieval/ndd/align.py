"""Temporal alignment of a query video against indexed videos by offset voting.

Every query frame that matches an indexed frame (Hamming distance within the threshold) votes
for that video and the time offset ``t_ref - t_query``. A copy, a re-encode, a trimmed copy or a
clip cut from a longer video all put their votes on ONE offset; frames that match by accident
scatter theirs. The best offset (with one sampling step of tolerance either side: the two videos
are sampled at different phases) gives the matched frames, the shares of each video they cover
and the matching time ranges. Low-quality frames (black, uniform) never vote: they are filtered
before they get here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FrameHit:
    query_ms: int
    ref_asset: str
    ref_ms: int
    distance: int
    region: bool = False  # found through a frame's content area (letterbox, border), not the whole frame


@dataclass(frozen=True)
class TimeRange:
    query_start_ms: int
    query_end_ms: int
    ref_start_ms: int
    ref_end_ms: int


@dataclass
class VideoMatch:
    asset_id: str
    offset_ms: int  # t_ref - t_query of the aligned copy
    matched_query_frames: int
    matched_ref_frames: int
    query_share: float  # of the query's good frames
    ref_share: float  # of the indexed video's good frames
    mean_distance: float
    ranges: list[TimeRange] = field(default_factory=list)
    via_region: int = 0  # aligned frames matched through a content area

    @property
    def share(self) -> float:
        """Coverage of the shorter side: 1.0 when one video is contained in the other."""
        return max(self.query_share, self.ref_share)


def align(hits: Iterable[FrameHit], query_good: int, ref_good: dict[str, int], interval_ms: int,
          gap_ms: int | None = None) -> list[VideoMatch]:
    """One VideoMatch per indexed video that received votes, best first (unfiltered: the caller
    applies its thresholds on frames and shares)."""
    by_asset: dict[str, list[FrameHit]] = defaultdict(list)
    for h in hits:
        by_asset[h.ref_asset].append(h)
    step = max(1, interval_ms)
    gap = gap_ms if gap_ms is not None else 2 * step
    out: list[VideoMatch] = []
    for asset, hs in by_asset.items():
        votes: dict[int, set[int]] = defaultdict(set)
        for h in hs:
            votes[round((h.ref_ms - h.query_ms) / step)].add(h.query_ms)
        # the bin whose +-1 neighbourhood holds the most distinct query frames (ties: smaller |offset|)
        best = max(votes, key=lambda b: (len(votes.get(b - 1, set()) | votes[b] | votes.get(b + 1, set())), -abs(b)))
        window = {best - 1, best, best + 1}
        aligned = [h for h in hs if round((h.ref_ms - h.query_ms) / step) in window]
        # per query frame keep its closest aligned hit
        per_q: dict[int, FrameHit] = {}
        for h in aligned:
            cur = per_q.get(h.query_ms)
            if cur is None or (h.distance, abs(h.ref_ms - h.query_ms - best * step)) < (
                cur.distance, abs(cur.ref_ms - cur.query_ms - best * step)
            ):
                per_q[h.query_ms] = h
        chosen = sorted(per_q.values(), key=lambda h: h.query_ms)
        ref_frames = {h.ref_ms for h in aligned}
        offset = round(sum(h.ref_ms - h.query_ms for h in chosen) / len(chosen))
        out.append(VideoMatch(
            asset_id=asset,
            offset_ms=offset,
            matched_query_frames=len(chosen),
            matched_ref_frames=len(ref_frames),
            query_share=min(1.0, len(chosen) / max(1, query_good)),
            ref_share=min(1.0, len(ref_frames) / max(1, ref_good.get(asset, len(ref_frames)))),
            mean_distance=sum(h.distance for h in chosen) / len(chosen),
            ranges=_ranges(chosen, gap),
            via_region=sum(h.region for h in chosen),
        ))
    out.sort(key=lambda m: (-m.matched_query_frames, -m.share, m.mean_distance, m.asset_id))
    return out


def _ranges(chosen: list[FrameHit], gap_ms: int) -> list[TimeRange]:
    """Runs of matched frames, split where the query skips more than ``gap_ms`` without a match."""
    ranges: list[TimeRange] = []
    run: list[FrameHit] = []
    for h in chosen:
        if run and h.query_ms - run[-1].query_ms > gap_ms:
            ranges.append(_range(run))
            run = []
        run.append(h)
    if run:
        ranges.append(_range(run))
    return ranges


def _range(run: list[FrameHit]) -> TimeRange:
    return TimeRange(run[0].query_ms, run[-1].query_ms, min(h.ref_ms for h in run), max(h.ref_ms for h in run))
