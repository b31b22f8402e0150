"""People API (docs/people.md): the People page (persons with cover and counts), a person's assets in time order,
the faces of an asset, "more photos of this face", curation (name, merge, split, remove/assign a face, hide,
cover, undo), forgetting, and the privacy switches. JSON only: the web app's pages are built on it.

Reads follow the API's read rule (anonymous reads unless switched off); every change needs the ``upload`` scope
(editorial work), forgetting and the switches the ``admin`` scope.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import actor_of, require_scope, settings_of
from retrieval.people import curation, queries

router = APIRouter(prefix="/v1", tags=["people"])
T = TypeVar("T")
EDIT = [Depends(require_scope("upload"))]
ADMIN = [Depends(require_scope("admin"))]


class NameIn(BaseModel):
    name: str | None = Field(None, max_length=200, description="null removes the name")


class MergeIn(BaseModel):
    sources: list[str] = Field(min_length=1, max_length=100, description="persons merged INTO the path's person")


class FacesIn(BaseModel):
    face_ids: list[str] = Field(min_length=1, max_length=10000)


class HideIn(BaseModel):
    hidden: bool = True


class CoverIn(BaseModel):
    face_id: str


class AssignIn(BaseModel):
    person_id: str


class RecognitionIn(BaseModel):
    recognition: bool


async def _run(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    try:
        return await run_in_threadpool(fn, *args, **kw)
    except curation.PeopleError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc).strip("'\"")) from None


# ------------------------------------------------------------------------------ reads
@router.get("/people")
async def list_people(request: Request, include_hidden: bool = False,
                      min_faces: Annotated[int, Query(ge=1, le=1000)] = 1,
                      q: Annotated[str | None, Query(max_length=200, description="name contains")] = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100,
                      offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    """Persons with their cover face and counts, the most photographed first."""
    return await _run(queries.list_persons, settings_of(request), include_hidden=include_hidden,
                      min_faces=min_faces, name=q, limit=limit, offset=offset)


@router.get("/people/audit")
async def people_audit(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
    return await _run(queries.audit_log, settings_of(request), limit, offset)


@router.get("/people/{person_id}")
async def get_person(request: Request, person_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                     offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    """The person and its assets in time order (oldest upload first), with this person's face boxes."""
    person = await _run(queries.get_person, settings_of(request), person_id, limit=limit, offset=offset)
    if person is None:
        raise HTTPException(404, f"no person {person_id}")
    for item in person["items"]:
        item["card_url"] = str(request.url_for("asset_card", asset_id=item["asset_id"]))
    return person


@router.get("/assets/{asset_id}/faces")
async def faces_of_asset(request: Request, asset_id: str) -> list[dict[str, Any]]:
    """The asset's faces as people: box, quality, person id and name (null when unnamed or hidden)."""
    return await _run(queries.asset_faces, settings_of(request), asset_id)


@router.get("/faces/{face_id}/similar")
async def similar_faces(request: Request, face_id: str, k: Annotated[int, Query(ge=1, le=200)] = 20,
                        max_distance: Annotated[float | None, Query(gt=0, le=2)] = None) -> dict[str, Any]:
    """More photos of this face: the nearest faces in other assets, one per asset."""
    return await _run(queries.similar_faces, settings_of(request), face_id, k, max_distance)


@router.get("/assets/{asset_id}/faces/similar")
async def similar_to_box(request: Request, asset_id: str,
                         box: Annotated[str, Query(description="x1,y1,x2,y2 normalised to the frame")],
                         keyframe_ms: int | None = None, k: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
    """More photos of the face in this box of the asset (the face that overlaps the box the most)."""
    try:
        coords = [float(v) for v in box.split(",")]
        assert len(coords) == 4
    except (ValueError, AssertionError):
        raise HTTPException(422, "box must be x1,y1,x2,y2") from None
    face = await _run(queries.face_at, settings_of(request), asset_id, coords, keyframe_ms)
    if face is None:
        raise HTTPException(404, f"no face of asset {asset_id} overlaps that box")
    return await _run(queries.similar_faces, settings_of(request), face, k)


# ------------------------------------------------------------------------------ curation
@router.post("/people/{person_id}/name", dependencies=EDIT)
async def name_person(request: Request, person_id: str, body: NameIn) -> dict[str, Any]:
    audit = await _run(curation.name_person, settings_of(request), person_id, body.name, actor_of(request))
    return {"person_id": person_id, "name": body.name, "audit_id": audit}


@router.post("/people/{person_id}/merge", dependencies=EDIT)
async def merge_people(request: Request, person_id: str, body: MergeIn) -> dict[str, Any]:
    audit = await _run(curation.merge, settings_of(request), person_id, body.sources, actor_of(request))
    return {"person_id": person_id, "merged": body.sources, "audit_id": audit}


@router.post("/people/{person_id}/split", dependencies=EDIT)
async def split_person(request: Request, person_id: str, body: FacesIn) -> dict[str, Any]:
    new_id, audit = await _run(curation.split, settings_of(request), person_id, body.face_ids, actor_of(request))
    return {"person_id": person_id, "new_person_id": new_id, "audit_id": audit}


@router.post("/people/{person_id}/faces/{face_id}/remove", dependencies=EDIT)
async def remove_face(request: Request, person_id: str, face_id: str) -> dict[str, Any]:
    audit = await _run(curation.remove_face, settings_of(request), person_id, face_id, actor_of(request))
    return {"person_id": person_id, "face_id": face_id, "audit_id": audit}


@router.post("/faces/{face_id}/assign", dependencies=EDIT)
async def assign_face(request: Request, face_id: str, body: AssignIn) -> dict[str, Any]:
    audit = await _run(curation.assign_face, settings_of(request), face_id, body.person_id, actor_of(request))
    return {"person_id": body.person_id, "face_id": face_id, "audit_id": audit}


@router.post("/people/{person_id}/hide", dependencies=EDIT)
async def hide_person(request: Request, person_id: str, body: HideIn) -> dict[str, Any]:
    audit = await _run(curation.hide_person, settings_of(request), person_id, body.hidden, actor_of(request))
    return {"person_id": person_id, "hidden": body.hidden, "audit_id": audit}


@router.post("/people/{person_id}/cover", dependencies=EDIT)
async def set_cover(request: Request, person_id: str, body: CoverIn) -> dict[str, Any]:
    audit = await _run(curation.set_cover, settings_of(request), person_id, body.face_id, actor_of(request))
    return {"person_id": person_id, "cover_face_id": body.face_id, "audit_id": audit}


@router.post("/people/audit/{audit_id}/undo", dependencies=EDIT)
async def undo(request: Request, audit_id: int) -> dict[str, Any]:
    new = await _run(curation.undo, settings_of(request), audit_id, actor_of(request))
    return {"undone": audit_id, "audit_id": new}


@router.post("/people/recluster", dependencies=EDIT)
async def recluster(request: Request) -> dict[str, int]:
    return await _run(curation.recluster_now, settings_of(request))


# ------------------------------------------------------------------------------ privacy
@router.post("/people/{person_id}/forget", dependencies=ADMIN)
async def forget_person(request: Request, person_id: str) -> dict[str, Any]:
    """Delete the person, its faces and their descriptors everywhere (not undoable)."""
    audit = await _run(curation.forget_person, settings_of(request), person_id, actor_of(request))
    return {"forgotten": person_id, "audit_id": audit}


@router.delete("/assets/{asset_id}/faces", dependencies=ADMIN)
async def forget_asset_faces(request: Request, asset_id: str) -> dict[str, Any]:
    """An asset deleted or killed: remove its faces and their descriptors."""
    n = await _run(curation.forget_asset_faces, settings_of(request), asset_id, actor_of(request))
    return {"asset_id": asset_id, "faces_removed": n}


@router.put("/people/collections/{collection}", dependencies=ADMIN)
async def collection_recognition(request: Request, collection: str, body: RecognitionIn) -> dict[str, Any]:
    """Recognition on/off for one collection (off also clears its faces' descriptors and persons)."""
    n = await _run(curation.set_collection_recognition, settings_of(request), collection, body.recognition,
                   actor_of(request))
    return {"collection": collection, "recognition": body.recognition, "faces_cleared": n}
