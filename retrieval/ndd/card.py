"""The asset card's near-duplicate section (api/app.py load_card): kept separate from "similar"."""

from __future__ import annotations

import logging
from typing import Any

from core.settings import Settings
from retrieval.ndd.service import match_to_dict, shared_service

log = logging.getLogger(__name__)


def near_duplicates_for_card(settings: Settings, asset_id: str, limit: int = 20) -> dict[str, Any]:
    """{"status": indexed|not_indexed|unavailable, "matches": [...]} - never fails the card."""
    try:
        svc = shared_service(settings)
        q = svc.query_of_asset(asset_id)
        matches = svc.search(q, "near", exclude=asset_id)
    except LookupError:
        return {"status": "not_indexed", "matches": []}
    except Exception as exc:  # noqa: BLE001 - the card shows everything else even if the NDD index is down
        log.warning("near-duplicates for the card of %s: %s", asset_id[:12], exc)
        return {"status": "unavailable", "matches": []}
    return {"status": "indexed", "total": len(matches), "matches": [match_to_dict(m) for m in matches[:limit]]}
