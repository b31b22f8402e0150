"""Feature routers mounted by api.app.create_app (add one line per new router module)."""

from __future__ import annotations

from fastapi import APIRouter

ROUTERS: list[APIRouter] = []

from api.ndd_routes import router as ndd_router  # noqa: E402 - near-duplicate search (api/ndd_routes.py)

ROUTERS.append(ndd_router)

from api import search_routes  # noqa: E402 - search, more-like-this, projects (api/search_routes.py)

ROUTERS += [search_routes.router, search_routes.projects_router]
