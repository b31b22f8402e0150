"""Near-duplicate detection without servers: the Hamming index, video matching, temporal alignment (hypothesis)
and the matcher's rules (quality filter, groups). PDQ hashing itself: tests/test_model_pdq.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks import ndd_media as media
from core.settings import NddSettings
from models.pdq import hashing as pdq
from models.pdq.video import FrameHash, hash_video
from retrieval.ndd.align import FrameHit, align
from retrieval.ndd.index import HammingIndex
from retrieval.ndd.matcher import IndexedAsset, Matcher, QueryImage, query_from_image


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return media.real_photos()


@given(n=st.integers(1, 300), flips=st.integers(0, 40), radius=st.integers(0, 64))
@settings(max_examples=40, deadline=None)
def test_hamming_index_is_exact(n: int, flips: int, radius: int) -> None:
    rng = np.random.default_rng(n * 1000 + flips)
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    idx: HammingIndex[int] = HammingIndex("flat")
    idx.add(codes, list(range(n)))
    q = codes[0].copy()
    bits = np.unpackbits(q)
    bits[rng.choice(256, flips, replace=False)] ^= 1
    q = np.packbits(bits)
    got = dict(idx.range_search(q[None], radius)[0])
    want = {i: int(np.unpackbits(codes[i] ^ q).sum()) for i in range(n)}
    assert got == {i: d for i, d in want.items() if d <= radius}
    idx.remove(0)
    assert 0 not in dict(idx.range_search(q[None], radius)[0]) and len(idx) == n - 1


@given(offset_s=st.integers(-30, 30), length=st.integers(4, 40), noise=st.integers(0, 30),
       seed=st.integers(0, 10_000))
@settings(max_examples=60, deadline=None)
def test_alignment_finds_the_offset_despite_random_hits(offset_s: int, length: int, noise: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    step = 1000
    jitter = lambda: int(rng.integers(-300, 301))  # noqa: E731 - sampling phases differ between copies
    hits = [FrameHit(t * step, "ref", t * step + offset_s * step + jitter(), 10) for t in range(length)]
    hits += [FrameHit(int(rng.integers(0, length)) * step, "ref", int(rng.integers(-60, 60)) * step, 25)
             for _ in range(min(noise, length - 1))]
    order = rng.permutation(len(hits))
    (m,) = align([hits[i] for i in order], query_good=length, ref_good={"ref": 100}, interval_ms=step)
    assert abs(m.offset_ms - offset_s * step) <= step
    assert m.matched_query_frames == length and m.query_share == 1.0
    assert m.ranges[0].query_start_ms == 0 and m.ranges[-1].query_end_ms == (length - 1) * step


def test_alignment_reports_separate_ranges() -> None:
    hits = [FrameHit(t * 1000, "v", t * 1000 + 5000, 4) for t in [*range(0, 5), *range(12, 18)]]
    (m,) = align(hits, query_good=20, ref_good={"v": 30}, interval_ms=1000)
    assert [(r.query_start_ms, r.query_end_ms, r.ref_start_ms) for r in m.ranges] == [(0, 4000, 5000),
                                                                                     (12000, 17000, 17000)]


def test_video_hashing_and_subclip_match_with_time_range(photos: dict[str, Image.Image]) -> None:
    long = media.encode(media.pan_zoom_frames(photos["astronaut"], 20, fps=10, seed=1), fps=10)
    clip = media.encode(list(media.pan_zoom_frames(photos["astronaut"], 20, fps=10, seed=1))[80:140], fps=10,
                        size=(160, 120))
    vh = hash_video(long)
    assert 19 <= len(vh.frames) <= 21 and vh.interval_ms == 1000 and vh.duration_ms >= 19_000
    m = Matcher(NddSettings())
    m.upsert([IndexedAsset("long", "video", None, 100, tuple(vh.frames), vh.interval_ms)])
    cq = hash_video(clip)
    (match,) = m.query_video(cq.frames, cq.interval_ms)
    assert match.asset_id == "long" and match.video is not None
    assert abs(match.video.offset_ms - 8000) <= 1000 and match.video.query_share >= 0.8
    r = match.video.ranges[0]
    assert abs(r.ref_start_ms - 8000) <= 1000 and abs(r.ref_end_ms - 13000) <= 1500


def test_shared_black_intro_never_matches(photos: dict[str, Image.Image]) -> None:
    intro = list(media.black_frames(4, fps=10))
    a = media.encode(intro + list(media.pan_zoom_frames(photos["coffee"], 8, fps=10)), fps=10)
    b = media.encode(intro + list(media.pan_zoom_frames(photos["rocket"], 8, fps=10)), fps=10)
    black = media.encode(media.black_frames(5, fps=10), fps=10)
    m = Matcher(NddSettings())
    va = hash_video(a)
    assert sum(f.quality < 50 for f in va.frames) >= 3  # the intro is there, and filtered
    m.upsert([IndexedAsset("a", "video", None, 100, tuple(va.frames), va.interval_ms)])
    vb, vblack = hash_video(b), hash_video(black)
    assert m.query_video(vb.frames, vb.interval_ms) == []
    assert m.query_video(vblack.frames, vblack.interval_ms) == []


def test_image_matcher_quality_rule_video_frames_and_groups(photos: dict[str, Image.Image]) -> None:
    m = Matcher(NddSettings())
    cat = pdq.to_rgb_array(photos["chelsea"])
    h, q = pdq.hash_array(cat)
    copy_h, copy_q = pdq.hash_image(media.jpeg(photos["chelsea"].resize((200, 150)), 50))
    other_h, other_q = pdq.hash_image(photos["coffee"])
    black_h, black_q = pdq.hash_array(np.zeros((100, 100, 3), np.uint8))
    black2_h, _ = pdq.hash_array(np.full((80, 120, 3), 3, np.uint8))
    m.upsert([IndexedAsset("cat", "image", h, q), IndexedAsset("cat-copy", "image", copy_h, copy_q),
              IndexedAsset("coffee", "image", other_h, other_q), IndexedAsset("black", "image", black_h, black_q)])
    found = m.query_image(query_from_image(cat), exclude="cat")
    assert [x.asset_id for x in found] == ["cat-copy"] and found[0].relation == "near"
    assert m.query_image(QueryImage(h, q))[0].relation == "exact"
    # a uniform picture is never a near-duplicate of anything (only an exact one)
    assert all(x.relation == "exact" for x in m.query_image(QueryImage(black2_h, 0)))
    assert m.groups() == [["cat", "cat-copy"]]
    # the picture inside a video is found with its time
    frames = tuple(FrameHash(t, h if t == 3000 else other_h, 100) for t in range(0, 6000, 1000))
    m.upsert([IndexedAsset("clip", "video", None, 100, frames, 1000)])
    in_video = [x for x in m.query_image(QueryImage(copy_h, copy_q)) if x.asset_id == "clip"]
    assert in_video and in_video[0].frame_ms == 3000
