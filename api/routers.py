"""Feature routers mounted by api.app.create_app (add one line per new router module)."""

from __future__ import annotations

from fastapi import APIRouter

ROUTERS: list[APIRouter] = []
