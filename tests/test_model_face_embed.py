"""face_embed: dlib descriptors on labelled face photos (tests/data/faces), in-process (the same ``Core`` Triton's
python backend runs), the payload decode (quality gate, descriptors kept out of events), verify through the
session's Triton and one run of its processor. People (the sink, curation, search) are tests/test_people.py.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from core.settings import Settings
from core.storage import ObjectStore
from models import face_embed, store
from models.face_embed import FaceEmbed, descriptor_from_bytes, descriptor_key
from models.frames import letterbox
from schemas.events import FaceDescriptors
from tests.support.modelrun import annotations, model_run
from tests.support.models import load_core, photo
from tests.support.stack import load_models

FACES = Path(__file__).resolve().parent / "data" / "faces"


def frame(img: Image.Image) -> dict[str, np.ndarray]:
    arr, size = letterbox(img, face_embed.CANVAS)
    return {"IMAGE": arr[None], "SIZE": size[None]}


def first_descriptor(core: Any, img: Image.Image) -> np.ndarray:
    out = core.infer(frame(img))
    assert out["FACES"][0, 0] >= 1
    return np.asarray(out["DESCRIPTORS"][0, 0])


@pytest.fixture(scope="module")
def core() -> Any:
    return load_core("face_embed")


def test_same_person_is_close_other_person_is_far(core: Any) -> None:
    obama = [first_descriptor(core, Image.open(FACES / f)) for f in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
    biden = first_descriptor(core, Image.open(FACES / "biden.jpg"))
    same = [float(np.linalg.norm(a - b)) for i, a in enumerate(obama) for b in obama[i + 1:]]
    other = [float(np.linalg.norm(a - biden)) for a in obama]
    assert max(same) < Settings().people.match_distance < min(other), (same, other)


def test_boxes_quality_and_no_face(core: Any) -> None:
    out = core.infer(frame(Image.fromarray(photo("astronaut"))))
    assert out["FACES"][0, 0] == 1
    x1, y1, x2, y2 = out["BOXES_OUT"][0, 0] * 512  # the astronaut photo is 512x512; MTCNN finds ~(181,62,268,172)
    assert 160 < x1 < 230 and 60 < y1 < 140 and 230 < x2 < 290 and 130 < y2 < 200
    assert out["SIZE_PX"][0, 0] > 80 and out["SHARPNESS"][0, 0] > 50
    assert core.infer(frame(Image.fromarray(photo("chelsea"))))["FACES"][0, 0] == 0  # the cat


def test_given_boxes_are_used(core: Any) -> None:
    """The MTCNN path: boxes from the client instead of dlib's detector."""
    inputs = frame(Image.fromarray(photo("astronaut")))
    boxes = np.zeros((1, face_embed.MAX_FACES, 4), np.float32)
    boxes[0, 0] = [181 / 512, 62 / 512, 268 / 512, 172 / 512]
    out = core.infer({**inputs, "BOXES": boxes, "SCORES": np.full((1, face_embed.MAX_FACES), 0.99, np.float32),
                      "COUNT": np.array([[1]], np.int32)})
    assert out["FACES"][0, 0] == 1 and abs(out["SCORES_OUT"][0, 0] - 0.99) < 1e-6
    hog = first_descriptor(core, Image.fromarray(photo("astronaut")))
    assert np.linalg.norm(out["DESCRIPTORS"][0, 0] - hog) < 0.3


def test_decode_gates_small_and_blurred_faces_and_keeps_descriptors_out_of_events(stack_settings: Settings,
                                                                                   core: Any) -> None:
    img = Image.open(FACES / "obama.jpg")
    blurred = img.filter(ImageFilter.GaussianBlur(6))
    inputs = {k: np.concatenate([frame(img)[k], frame(blurred)[k]]) for k in ("IMAGE", "SIZE")}
    out = core.infer(inputs)
    model = FaceEmbed(stack_settings)
    sharp, soft = model.to_payloads(out, 2)
    assert isinstance(sharp, FaceDescriptors) and isinstance(soft, FaceDescriptors)
    assert sharp.faces[0].recognisable and sharp.faces[0].descriptor is None  # not in the event ...
    ref = sharp.faces[0].descriptor_ref
    assert ref is not None  # ... but in the object store, content-addressed
    stored = descriptor_from_bytes(ObjectStore(stack_settings).get(descriptor_key(ref)))
    assert np.allclose(stored, out["DESCRIPTORS"][0, 0])
    assert soft.face_count == 1 and not soft.faces[0].recognisable and soft.faces[0].descriptor_ref is None
    configured = stack_settings.model_copy(deep=True)
    configured.people.descriptors_in_events = True
    (inline, _) = FaceEmbed(configured).to_payloads(out, 2)
    assert isinstance(inline, FaceDescriptors) and inline.faces[0].descriptor is not None
    assert len(inline.faces[0].descriptor) == 128
    assert sharp.search_fields().labels == ["face"] and sharp.search_fields().numeric == {"recognisable_faces": 1.0}


@pytest.mark.integration
def test_verify_and_processor_run(stack_settings: Settings) -> None:
    load_models(stack_settings, ["face_embed"])
    report = store.verify(stack_settings, names=["face_embed"])
    assert report.ok, str(report)
    assert "astronaut: 1 face(s)" in str(report)
    buf = io.BytesIO()
    Image.open(FACES / "biden.jpg").save(buf, "JPEG")
    media = {"biden": (buf.getvalue(), "biden.jpg"), "cat": (_png(photo("chelsea")), "chelsea.png")}
    with model_run(stack_settings, "t_face_embed_run", ["face_embed"], media) as (s, ids):
        (biden,) = annotations(s, ids["biden"], "face_embed")
        assert biden["payload"]["kind"] == "face_descriptors" and biden["payload"]["face_count"] == 1
        assert biden["payload"]["faces"][0]["recognisable"] and biden["payload"]["faces"][0]["descriptor"] is None
        (cat,) = annotations(s, ids["cat"], "face_embed")
        assert cat["payload"]["face_count"] == 0


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()
