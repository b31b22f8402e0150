"""The read side of moments: where in a video (or audio file) something is said or shown.

- ``search_speech``: full text over transcript segments (``search_moments``, 'simple' configuration: any language,
  a quoted phrase matches the words in order), each hit with its time and a highlighted snippet; the active
  model version only (``search_model_versions``);
- ``search_meaning``: the same segments by meaning (MiniLM vectors, ``search_moment_vectors``, 0015);
- ``best_moments``: for the video/audio hits of an asset search, the best few moments per asset: spoken words
  matching the query, and labels/objects/OCR lines matching it with the time ranges their video summaries hold;
- ``similar_frames``: nearest keyframes (``search_frame_vectors``) to a keyframe of a video, an asset's vector or a
  query vector: "this video, at 00:42";
- ``transcript`` + ``to_webvtt`` / ``to_srt``: the segments of an asset, and as subtitles.

Moments are PostgreSQL tables whichever engine holds the asset documents (core/migrations/0012_moments.sql).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from psycopg import sql

from core.db import Conn

MomentKind = Literal["speech", "label", "text", "frame"]
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Moment:
    asset_id: str
    kind: MomentKind
    start_ms: int
    end_ms: int
    score: float
    text: str = ""  # the segment, label or OCR line
    highlight: str | None = None  # the segment with matches between [[ and ]] (plain text: the caller escapes)
    model: str | None = None
    language: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Segment:
    start_ms: int
    end_ms: int
    text: str
    language: str | None


_HEADLINE = "StartSel=[[, StopSel=]], MaxFragments=0, HighlightAll=true"


def search_speech(conn: Conn, q: str, *, limit: int = 20, asset_ids: Sequence[str] | None = None,
                  language: str | None = None, per_asset: int | None = None) -> list[Moment]:
    """Transcript segments matching ``q`` (web-search syntax: words, "a phrase", -not), best first, then earliest.
    ``per_asset``: at most that many per asset."""
    if not q.strip():
        return []
    where = [sql.SQL("m.tsv @@ websearch_to_tsquery('simple', %(q)s)"),
             sql.SQL("m.model_version = coalesce(v.active_version, m.model_version)")]
    params: dict[str, Any] = {"q": q, "limit": limit}
    if asset_ids is not None:
        where.append(sql.SQL("m.asset_id = ANY(%(ids)s)"))
        params["ids"] = list(asset_ids)
    if language:
        where.append(sql.SQL("m.language = %(lang)s"))
        params["lang"] = language
    per = sql.SQL("")
    if per_asset is not None:
        per = sql.SQL("WHERE r.n <= %(per)s")
        params["per"] = per_asset
    query = sql.SQL("""
        SELECT r.* FROM (
            SELECT m.asset_id, m.model, m.start_ms, m.end_ms, m.text, m.language,
                   ts_rank_cd(m.tsv, websearch_to_tsquery('simple', %(q)s)) AS score,
                   ts_headline('simple', m.text, websearch_to_tsquery('simple', %(q)s), {hl}) AS highlight,
                   row_number() OVER (PARTITION BY m.asset_id ORDER BY
                       ts_rank_cd(m.tsv, websearch_to_tsquery('simple', %(q)s)) DESC, m.start_ms) AS n
            FROM search_moments m LEFT JOIN search_model_versions v ON v.model = m.model
            WHERE {where}) r {per}
        ORDER BY r.score DESC, r.asset_id, r.start_ms LIMIT %(limit)s""").format(
        hl=sql.Literal(_HEADLINE), where=sql.SQL(" AND ").join(where), per=per)
    return [Moment(r["asset_id"], "speech", r["start_ms"], r["end_ms"], float(r["score"]), r["text"],
                   r["highlight"], r["model"], r["language"]) for r in conn.execute(query, params)]


def search_meaning(conn: Conn, vector: Sequence[float], embed_model: str, *, limit: int = 20,
                   language: str | None = None, per_asset: int | None = None) -> list[Moment]:
    """Transcript segments nearest in meaning to ``vector`` (cosine, ``search_moment_vectors`` of ``embed_model``
    = "text_embed:<version>"), best first; the active speech model version only; ``per_asset``: at most that many
    per asset. HNSW gives the candidates (iterative scan, so filters still fill ``limit``)."""
    dim = len(vector)
    cast = sql.SQL("(x.embedding::vector({d}))").format(d=sql.Literal(dim))
    where = [sql.SQL("x.embed_model = %(em)s"),
             sql.SQL("x.model_version = coalesce(v.active_version, x.model_version)")]
    params: dict[str, Any] = {"v": np.asarray(vector, dtype=np.float32), "em": embed_model,
                              "depth": max(limit * 4, 40) * (1 if per_asset is None else 4)}
    if language:
        where.append(sql.SQL("m.language = %(lang)s"))
        params["lang"] = language
    conn.execute("SET LOCAL hnsw.ef_search = 200")
    conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    rows = conn.execute(sql.SQL(
        """SELECT m.asset_id, m.model, m.start_ms, m.end_ms, m.text, m.language,
                  1 - ({cast} <=> %(v)s::vector({d})) AS score
           FROM search_moment_vectors x
           JOIN search_moments m USING (asset_id, model, model_version, seq)
           LEFT JOIN search_model_versions v ON v.model = x.model
           WHERE {where} ORDER BY {cast} <=> %(v)s::vector({d}) LIMIT %(depth)s""").format(
        cast=cast, d=sql.Literal(dim), where=sql.SQL(" AND ").join(where)), params).fetchall()
    out: list[Moment] = []
    seen: dict[str, int] = {}
    for r in sorted(rows, key=lambda r: (-float(r["score"]), r["asset_id"], r["start_ms"])):
        if per_asset is not None and seen.get(r["asset_id"], 0) >= per_asset:
            continue
        seen[r["asset_id"]] = seen.get(r["asset_id"], 0) + 1
        out.append(Moment(r["asset_id"], "speech", int(r["start_ms"]), int(r["end_ms"]), float(r["score"]),
                          r["text"], None, r["model"], r["language"]))
        if len(out) >= limit:
            break
    return out


def _visual(conn: Conn, q: str, asset_ids: Sequence[str]) -> list[Moment]:
    """Labels / objects / OCR lines of the assets' video summaries that contain a word of ``q``, with their
    time ranges (the summary annotations in ``annotations``, keyframe_ms NULL)."""
    words = {w.lower() for w in _WORD.findall(q) if len(w) > 1}
    if not words or not asset_ids:
        return []
    rows = conn.execute(
        """SELECT asset_id, model, payload FROM annotations
           WHERE asset_id = ANY(%s) AND keyframe_ms IS NULL AND payload->>'kind' = 'video_summary'""",
        (list(asset_ids),)).fetchall()
    out: list[Moment] = []
    for r in rows:
        p = r["payload"]
        groups: tuple[tuple[MomentKind, list[Any]], ...] = (("label", p.get("tags", [])),
                                                            ("text", p.get("text_segments", [])))
        for kind, tags in groups:
            for tag in tags:
                name = str(tag["name"])
                hit = words & {w.lower() for w in _WORD.findall(name)}
                if not hit:
                    continue
                for rng in tag["ranges"]:
                    out.append(Moment(r["asset_id"], kind, int(rng["start_ms"]), int(rng["end_ms"]),
                                      float(tag["score"]) * len(hit) / len(words), name, None, r["model"]))
    return out


def best_moments(conn: Conn, q: str, asset_ids: Sequence[str], per_asset: int = 3) -> dict[str, list[Moment]]:
    """asset -> its best moments for ``q``: spoken matches first (they are the most specific), then what is shown
    (labels, objects, OCR), earliest first within a score."""
    found: dict[str, list[Moment]] = {}
    for m in search_speech(conn, q, limit=per_asset * max(1, len(asset_ids)), asset_ids=asset_ids,
                           per_asset=per_asset):
        found.setdefault(m.asset_id, []).append(m)
    for m in sorted(_visual(conn, q, asset_ids), key=lambda m: (-m.score, m.start_ms)):
        bucket = found.setdefault(m.asset_id, [])
        if len(bucket) < per_asset and not any(b.kind == m.kind and b.start_ms == m.start_ms and b.text == m.text
                                               for b in bucket):
            bucket.append(m)
    return found


def frame_vector(conn: Conn, asset_id: str, model: str, t_ms: int | None) -> tuple[list[float], int] | None:
    """The stored keyframe vector of ``asset_id`` nearest to ``t_ms`` (the first keyframe when None), active
    version; (vector, its keyframe time)."""
    row = conn.execute(
        """SELECT f.embedding, f.t_ms FROM search_frame_vectors f
           LEFT JOIN search_model_versions v ON v.model = f.model
           WHERE f.asset_id=%s AND f.model=%s AND f.model_version = coalesce(v.active_version, f.model_version)
           ORDER BY abs(f.t_ms - %s), f.t_ms LIMIT 1""", (asset_id, model, t_ms or 0)).fetchone()
    if row is None:
        return None
    return [float(x) for x in np.asarray(row["embedding"].to_list() if hasattr(row["embedding"], "to_list")
                                         else row["embedding"], dtype=np.float32)], int(row["t_ms"])


def similar_frames(conn: Conn, model: str, vector: Sequence[float], *, k: int = 10,
                   exclude: tuple[str, int] | None = None, per_asset: int = 1) -> list[Moment]:
    """The ``k`` keyframes nearest to ``vector`` (cosine), at most ``per_asset`` per video, best first."""
    version = conn.execute("SELECT active_version FROM search_model_versions WHERE model=%s", (model,)).fetchone()
    if version is None:
        raise LookupError(f"no vectors indexed for model {model!r}")
    dim = len(vector)
    cast = sql.SQL("(f.embedding::vector({d}))").format(d=sql.Literal(dim))
    qv = np.asarray(vector, dtype=np.float32)
    depth = max(k * 4, 40)
    conn.execute("SET LOCAL hnsw.ef_search = 200")
    conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    rows = conn.execute(sql.SQL(
        """SELECT f.asset_id, f.t_ms, 1 - ({cast} <=> %(v)s::vector({d})) AS score
           FROM search_frame_vectors f WHERE f.model = %(m)s AND f.model_version = %(ver)s
           ORDER BY {cast} <=> %(v)s::vector({d}) LIMIT %(depth)s""").format(cast=cast, d=sql.Literal(dim)),
        {"v": qv, "m": model, "ver": version["active_version"], "depth": depth}).fetchall()
    out: list[Moment] = []
    seen: dict[str, int] = {}
    for r in rows:
        if exclude is not None and (r["asset_id"], r["t_ms"]) == exclude:
            continue
        if seen.get(r["asset_id"], 0) >= per_asset:
            continue
        seen[r["asset_id"]] = seen.get(r["asset_id"], 0) + 1
        out.append(Moment(r["asset_id"], "frame", int(r["t_ms"]), int(r["t_ms"]), float(r["score"]), model=model))
        if len(out) >= k:
            break
    return out


def best_frames(conn: Conn, model: str, vector: Sequence[float], asset_ids: Sequence[str]) -> dict[str, Moment]:
    """asset -> its keyframe nearest to ``vector`` (exact, over the given videos' keyframes only: a page of hits)."""
    cast = sql.SQL("(f.embedding::vector({d}))").format(d=sql.Literal(len(vector)))
    rows = conn.execute(sql.SQL(
        """SELECT DISTINCT ON (f.asset_id) f.asset_id, f.t_ms, 1 - ({cast} <=> %(v)s::vector({d})) AS score
           FROM search_frame_vectors f LEFT JOIN search_model_versions v ON v.model = f.model
           WHERE f.model = %(m)s AND f.asset_id = ANY(%(ids)s)
             AND f.model_version = coalesce(v.active_version, f.model_version)
           ORDER BY f.asset_id, {cast} <=> %(v)s::vector({d}), f.t_ms""").format(
        cast=cast, d=sql.Literal(len(vector))),
        {"v": np.asarray(vector, dtype=np.float32), "m": model, "ids": list(asset_ids)}).fetchall()
    return {r["asset_id"]: Moment(r["asset_id"], "frame", int(r["t_ms"]), int(r["t_ms"]), float(r["score"]),
                                  model=model) for r in rows}


def transcript(conn: Conn, asset_id: str) -> list[Segment]:
    """The asset's transcript segments in order (the active model version)."""
    rows = conn.execute(
        """SELECT m.start_ms, m.end_ms, m.text, m.language FROM search_moments m
           LEFT JOIN search_model_versions v ON v.model = m.model
           WHERE m.asset_id=%s AND m.model_version = coalesce(v.active_version, m.model_version)
           ORDER BY m.start_ms, m.seq""", (asset_id,)).fetchall()
    return [Segment(r["start_ms"], r["end_ms"], r["text"], r["language"]) for r in rows]


def _stamp(ms: int, sep: str) -> str:
    h, rest = divmod(max(0, ms), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"


def _cue_text(text: str) -> str:
    # a blank line ends a cue, and "-->" would start a timing line: neither may appear inside one
    return " ".join(text.split()).replace("-->", "->")


def to_webvtt(segments: Sequence[Segment]) -> str:
    lines = ["WEBVTT", ""]
    for i, s in enumerate(segments, 1):
        text = _cue_text(s.text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines += [str(i), f"{_stamp(s.start_ms, '.')} --> {_stamp(max(s.end_ms, s.start_ms + 1), '.')}", text, ""]
    return "\n".join(lines)


def to_srt(segments: Sequence[Segment]) -> str:
    lines: list[str] = []
    for i, s in enumerate(segments, 1):
        lines += [str(i), f"{_stamp(s.start_ms, ',')} --> {_stamp(max(s.end_ms, s.start_ms + 1), ',')}",
                  _cue_text(s.text), ""]
    return "\n".join(lines)


def clock(ms: int) -> str:
    """00:42 / 1:02:03: how a time is shown to people."""
    s = max(0, ms) // 1000
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"
