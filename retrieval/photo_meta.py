"""The read side of a photo's metadata record and rights (docs/metadata.md): what results and the asset page show
with every image, Guardian Grid style: credit, byline, copyright, usage terms, embargo.

The record is the ``media_metadata`` annotation (models/media_metadata.py) with an editor's changes on top
(``asset_metadata_edits``, written by sinks/lifecycle.py ``apply(..., "edit")``); the state is ``asset_lifecycle``.
"""

from __future__ import annotations

from typing import Any

from core import db
from core.settings import Settings

MODEL = "media_metadata"
RIGHTS_FIELDS = ("headline", "caption", "byline", "credit", "source", "copyright", "usage_terms", "licence_url",
                 "instructions", "city", "country", "date_created", "ai_generated")
EDITABLE = ("headline", "title", "caption", "byline", "byline_title", "credit", "source", "copyright",
            "usage_terms", "licence_url", "instructions", "keywords", "location", "city", "region", "country",
            "country_code")


def records(settings: Settings, asset_ids: list[str]) -> dict[str, dict[str, Any]]:
    """asset id -> its metadata record (edits applied) and lifecycle state, for the given assets."""
    if not asset_ids:
        return {}
    with db.connect(settings) as conn:
        rows = conn.execute(
            """SELECT a.asset_id, m.payload, e.fields AS edits, l.state, l.embargo_until, l.reason
               FROM unnest(%s::text[]) AS a(asset_id)
               LEFT JOIN LATERAL (SELECT payload FROM annotations x WHERE x.asset_id = a.asset_id AND x.model = %s
                                  AND x.keyframe_ms IS NULL ORDER BY produced_at DESC LIMIT 1) m ON TRUE
               LEFT JOIN asset_metadata_edits e ON e.asset_id = a.asset_id
               LEFT JOIN asset_lifecycle l ON l.asset_id = a.asset_id""", (asset_ids, MODEL)).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        rec = dict(r["payload"] or {})
        rec.update(r["edits"] or {})
        rec["state"] = r["state"] or "active"
        rec["embargo_until"] = r["embargo_until"].isoformat() if r["embargo_until"] else None
        rec["edited"] = sorted((r["edits"] or {}).keys())
        out[r["asset_id"]] = rec
    return out


def rights_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The short form every result carries."""
    return {k: rec.get(k) for k in (*RIGHTS_FIELDS, "state", "embargo_until") if rec.get(k) not in (None, [], "")}
