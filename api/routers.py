"""Feature routers mounted by api.app.create_app (add one line per new router module)."""

from __future__ import annotations

from fastapi import APIRouter

ROUTERS: list[APIRouter] = []

from api.ndd_routes import router as ndd_router  # noqa: E402 - near-duplicate search (api/ndd_routes.py)

ROUTERS.append(ndd_router)

from api import search_routes  # noqa: E402 - search, more-like-this, projects (api/search_routes.py)

ROUTERS += [search_routes.router, search_routes.projects_router]

from api.media_routes import router as media_router  # noqa: E402 - renditions + original (api/media_routes.py)

ROUTERS.append(media_router)

from api.live_routes import router as live_router  # noqa: E402 - live annotation states, SSE (api/live_routes.py)
from api.web_routes import router as web_router  # noqa: E402 - the web app's pages (api/web_routes.py, docs/ui.md)

ROUTERS += [live_router, web_router]

from api.people_routes import router as people_router  # noqa: E402 - people: persons, curation (docs/people.md)

ROUTERS.append(people_router)

from api.rights_routes import router as rights_router  # noqa: E402 - metadata, embargo, kill, delete (docs/metadata.md)

ROUTERS.append(rights_router)

from api.annotate_routes import router as annotate_router  # noqa: E402 - on-demand annotation, REST mirror of gRPC

ROUTERS.append(annotate_router)

from api.asyncapi_routes import router as asyncapi_router  # noqa: E402 - the topics' AsyncAPI document

ROUTERS.append(asyncapi_router)

from api.webhook_routes import router as webhook_router  # noqa: E402 - webhooks admin API (assets.annotated)

ROUTERS.append(webhook_router)
