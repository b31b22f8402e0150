"""The asset card: everything known about one asset (``GET /v1/assets/{id}``, the web app's asset page)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from api.media_routes import MODEL as RENDITIONS_MODEL
from api.media_routes import card_renditions, pick_renditions
from core import db
from core.settings import Settings
from retrieval import photo_meta
from retrieval.ndd.card import near_duplicates_for_card
from sinks import lifecycle


def load_card(settings: Settings, asset_id: str, include_hidden: bool = False) -> dict[str, Any] | None:
    """Everything known about one asset: metadata, per-model status and every annotation. None for an unknown
    asset, and for a killed, deleted or embargoed one (docs/metadata.md) unless ``include_hidden``."""
    with db.connect(settings) as conn:
        asset = conn.execute("SELECT * FROM assets WHERE asset_id=%s", (asset_id,)).fetchone()
        if asset is None:
            return None
        state = lifecycle.state_of(conn, asset_id)
        if not state.visible and not include_hidden:
            return None
        status = conn.execute(
            "SELECT model, model_version, status, reason, updated_at FROM asset_model_status WHERE asset_id=%s",
            (asset_id,),
        ).fetchall()
        anns = conn.execute(
            """SELECT annotation_id, model, model_version, keyframe_ms, payload, produced_at
               FROM annotations WHERE asset_id=%s ORDER BY model, keyframe_ms NULLS FIRST""",
            (asset_id,),
        ).fetchall()
    # the renditions (display URLs) from the untouched payloads, before the card shortens anything
    renditions = card_renditions(asset_id, pick_renditions(
        settings, [a for a in anns if a["model"] == RENDITIONS_MODEL]))
    for a in anns:  # embeddings are for machines; the card shows their size
        p = a["payload"]
        if isinstance(p, dict) and isinstance(p.get("embedding"), list):  # a video summary's may be null
            p["embedding"] = f"<{len(p['embedding'])} floats>"
        if isinstance(p, dict) and p.get("kind") == "perceptual_hash" and p.get("frames"):
            p["frames"] = f"<{len(p['frames'])} frame hashes>"
    card: dict[str, Any] = {"asset": dict(asset), "models": [dict(s) for s in status],
                            "annotations": [dict(a) for a in anns]}
    card["near_duplicates"] = near_duplicates_for_card(settings, asset_id)
    card["renditions"] = renditions
    rec = photo_meta.records(settings, [asset_id]).get(asset_id, {})
    card["photo"] = {k: v for k, v in rec.items() if k not in ("raw", "kind")} if rec else None
    card["lifecycle"] = {"state": state.state, "embargo_until": state.embargo_until, "reason": state.reason}
    card["original_url"] = f"/v1/assets/{quote(asset_id, safe='')}/original"
    return card
