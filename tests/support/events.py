"""A minimal valid ``assets.annotated`` event for the tests that publish one (AsyncAPI, the example, webhooks)."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import AssetAnnotated, AssetInfo, MergedLabel, ModelOutcome


def annotated_event(asset_id: str, model: str = "efficientnet_lite0") -> AssetAnnotated:
    """One asset, one model done, one label ("boat" 0.9); the event id follows from the asset id."""
    return AssetAnnotated(
        event_id=f"asa-{asset_id[:32]}", asset_id=asset_id, media_type="image",
        asset=AssetInfo(filename="harbour.jpg", content_type="image/jpeg", size_bytes=1234,
                        uploaded_at=datetime(2026, 1, 2, tzinfo=UTC)),
        models=[ModelOutcome(model=model, status="done", model_version="v1", annotation_id="x")],
        labels=[MergedLabel(name="boat", score=0.9, models=[model])],
        text={}, numeric={}, embeddings=[])
