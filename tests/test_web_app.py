"""The web app in a real browser (Debian's chromium through Playwright) against the real embedded stack: the
sample photos, a video, hostile file names/titles and a photo whose text reads as markup go through the real
pipeline (renditions, labels, faces, OCR, PDQ, MiniLM); the API serves the pages on a loopback port.

What each test looks at is what a person sees: the grid, the facet counts, the boxes drawn over the picture,
the live model states after an upload, the blur. Screenshots land in the test's temp dir (and in docs/ui/
with ARGUS_SCREENSHOTS=docs/ui). Page load times are printed (and written to ``ui-timings.json`` in the temp
dir), never asserted: speed belongs to benchmarks.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from api.app import create_app
from argus import pipeline
from argus.workers import Supervisor, default_workers
from core import db, kafka
from core.settings import Settings
from producers.ingest import Ingestor, Metadata
from schemas.events import Annotation, NsfwDetection, dump
from tests.support.browser import chromium_missing, launched_browser, served, shot
from tests.support.models import photo
from tests.support.stack import SESSION_MODELS, isolated_settings, load_models
from tests.support.videofactory import make_video

pytestmark = [pytest.mark.integration,
              # justified: no chromium here (bootstrap installs it as root); CI runs these
              pytest.mark.skipif(bool(chromium_missing()), reason=chromium_missing() or "")]

MODELS = [*SESSION_MODELS, "renditions", "face_embed"]
FACES = Path(__file__).parent / "data" / "faces"
HOSTILE_NAME = '<svg onload="window.__pwned=1">.jpg'  # no '/': ingest keeps only a path's last part
HOSTILE_TITLE = '"><img src=x onerror="window.__pwned=1">'
MARKUP_TEXT = "<b>BREAKING</b> <script>"  # PP-OCR reads this one back exactly (checked)
TIMINGS: dict[str, float] = {}


def _markup_photo() -> bytes:
    """A photo of a sign that reads as markup: OCR reads it, the page must show it as text."""
    img = Image.new("RGB", (1200, 200), "white")
    draw = ImageDraw.Draw(img)
    try:
        font: Any = ImageFont.truetype("DejaVuSans.ttf", 44)
    except OSError:
        font = ImageFont.load_default(size=44)
    draw.text((30, 70), MARKUP_TEXT, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _standin_nsfw_verdict(s: Settings, asset_id: str) -> None:
    """STAND-IN for the NSFW model's verdict on one photo: no sample photo is explicit (and none should be
    made), so an 'nsfw' annotation is published on the model's topic as the model would; the real sinks apply
    it. The model itself is tested in test_model_nsfw_nudenet.py; this only drives the blur."""
    ann = Annotation(event_id=f"ann-standin-{asset_id}", annotation_id=f"standin-{asset_id}", asset_id=asset_id,
                     model="nsfw_nudenet", model_version="standin-for-ui-test", keyframe_ms=None,
                     payload=NsfwDetection(nsfw=True, nsfw_score=0.93, threshold=0.5, regions=[]))
    producer = kafka.producer(s)
    producer.produce(s.topic(kafka.annotations_topic("nsfw_nudenet")), key=asset_id, value=dump(ann))
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def web(stack_settings: Settings, sample_files: list[Path], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[dict[str, Any]]:
    load_models(stack_settings, ["face_embed"])
    workers_settings = isolated_settings(stack_settings, "t_web")
    workers_settings.models = [*MODELS, "nsfw_nudenet"]  # the sinks follow the NSFW topic (stand-in verdict)
    kafka.ensure_topics(workers_settings, kafka.all_topics(workers_settings, workers_settings.models))
    api_settings = workers_settings.model_copy(deep=True)
    api_settings.models = list(MODELS)  # the processors that really run: the upload page expects these
    workers = [w for w in default_workers(workers_settings) if w.name != "processor-nsfw_nudenet"]
    sup = Supervisor(workers_settings, workers)
    sup.start()
    try:
        ing = Ingestor(workers_settings)
        ids = {p.stem: ing.ingest_bytes(p.read_bytes(), Metadata(filename=p.name, source="samples",
                                                                 title=None)).asset_id for p in sample_files}
        ids["hostile"] = ing.ingest_bytes(
            _jpeg(photo("coffee")[::2, ::2], 80), Metadata(filename=HOSTILE_NAME, title=HOSTILE_TITLE,
                                                           source="upload", collection="<b>desk</b>")).asset_id
        for name in ("obama", "obama2"):  # one person in two photos (the People pages)
            ids[name] = ing.ingest_bytes((FACES / f"{name}.jpg").read_bytes(),
                                         Metadata(filename=f"{name}.jpg", source="wire")).asset_id
        ids["markup"] = ing.ingest_bytes(_markup_photo(), Metadata(filename="sign.jpg", source="upload")).asset_id
        clip = make_video([(photo("astronaut"), 2.0), (photo("rocket"), 2.0), (photo("chelsea"), 2.0)])
        ids["video"] = ing.ingest_bytes(clip, Metadata(filename="launch.mp4", source="upload")).asset_id
        for model in MODELS:
            final = pipeline.wait_until_done(workers_settings, list(ids.values()), model, timeout=600)
            assert final.done, f"{model}: {final}; dead workers: {sup.dead()}"
        _standin_nsfw_verdict(workers_settings, ids["rocket"])
        pipeline.wait_until_done(workers_settings, [ids["rocket"]], "nsfw_nudenet", timeout=120)
        tmp = tmp_path_factory.mktemp("web")
        with served(create_app(api_settings)) as base, launched_browser() as browser:
            yield {"base": base, "ids": ids, "browser": browser, "settings": api_settings, "tmp": tmp}
        (tmp / "ui-timings.json").write_text(json.dumps(TIMINGS, indent=2))
        print("\nweb app page load times (ms):", json.dumps(TIMINGS))
    finally:
        sup.stop()


def _jpeg(arr: Any, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


class Page:
    """A fresh browser context + page that records dialogs (a hostile string that ran would open one or set
    window.__pwned) and failed requests."""

    def __init__(self, web: dict[str, Any]) -> None:
        self.ctx = web["browser"].new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
        self.page = self.ctx.new_page()
        self.base = web["base"]
        self.dialogs: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.set_default_timeout(20000)

    def goto(self, path: str, timing: str | None = None) -> Any:
        resp = self.page.goto(self.base + path, wait_until="load")
        if timing:
            nav = self.page.evaluate("() => performance.getEntriesByType('navigation')[0].toJSON()")
            TIMINGS[timing] = round(nav["loadEventEnd"] - nav["startTime"], 1)
        return resp

    def login(self, key: str = "dev-key") -> None:
        self.goto("/login")
        self.page.fill("#key", key)
        self.page.click("form.login button[type=submit]")
        self.page.wait_for_url(self.base + "/")

    def pwned(self) -> bool:
        return bool(self.page.evaluate("() => window.__pwned === 1")) or bool(self.dialogs)

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def page(web: dict[str, Any]) -> Iterator[Page]:
    p = Page(web)
    yield p
    p.close()


def _count(page: Page) -> int:
    return int(page.page.text_content("#total") or "0")


# ------------------------------------------------------------------------------ search
def test_search_facet_click_and_back_button(web: dict[str, Any], page: Page) -> None:
    resp = page.goto("/?q=cat", timing="search_page_first")
    assert resp.status == 200 and "script-src 'self'" in resp.headers["content-security-policy"]
    hits = page.page.locator("#grid li.hit")
    assert web["ids"]["chelsea"] in [h.get_attribute("data-asset") for h in hits.all()]
    first = page.page.locator(f"#grid li.hit[data-asset='{web['ids']['chelsea']}']")
    assert first.locator("img").evaluate("img => img.naturalWidth") > 0, "the thumbnail rendition is shown"
    assert "/renditions/thumb" in (first.locator("img").get_attribute("src") or "")
    page.goto("/")
    everything = _count(page)
    assert everything == len(web["ids"])
    shot(page.page, "search", web["tmp"])
    link = page.page.locator(".facet[data-facet=media_type] li", has_text="video").locator("a")
    facet_n = int(page.page.locator(".facet[data-facet=media_type] li", has_text="video").locator(".n").inner_text())
    link.click()
    page.page.wait_for_url("**media_type=video**")
    assert _count(page) == facet_n == 1
    assert page.page.locator("#grid li.hit .badge").inner_text() == "video"
    page.page.go_back()
    page.page.wait_for_url(page.base + "/")
    assert _count(page) == everything
    # the query lives in the URL: the same address gives the same page
    page.goto("/?q=cat&sort=newest")
    assert page.page.input_value("#q") == "cat" and page.page.input_value("#sort") == "newest"


def test_semantic_and_hybrid_modes(web: dict[str, Any], page: Page) -> None:
    page.goto("/?q=a+pet+animal&mode=semantic")
    assert page.page.locator("#grid li.hit").count() > 0
    assert page.page.input_value("#mode") == "semantic"
    page.goto("/?q=cat&mode=hybrid")
    found = [h.get_attribute("data-asset") for h in page.page.locator("#grid li.hit").all()]
    assert web["ids"]["chelsea"] in found[:3]


def test_bad_query_gets_a_clear_message(web: dict[str, Any], page: Page) -> None:
    resp = page.goto("/?from=2026-12-05&to=2026-12-01")
    assert resp.status == 400
    assert "uploaded_from must be before uploaded_to" in page.page.inner_text(".error")


# ------------------------------------------------------------------------------ asset page
def test_asset_page_draws_every_face_and_text_box(web: dict[str, Any], page: Page) -> None:
    from tests.support.modelrun import annotations

    s, ids = web["settings"], web["ids"]
    faces = annotations(s, ids["astronaut"], "face_mtcnn")[0]["payload"]["face_count"]
    assert faces >= 1
    page.goto(f"/asset/{ids['astronaut']}", timing="asset_page")
    page.page.wait_for_function("() => document.querySelector('#picture').naturalWidth > 0")
    assert page.page.locator("#overlay g[data-model=face_mtcnn]").count() == faces
    assert page.page.locator(".count[data-model=face_mtcnn]").inner_text() == str(faces)
    assert "/renditions/preview" in (page.page.get_attribute("#picture", "src") or "")
    for state in page.page.locator("#models li").all():
        assert "done" in (state.get_attribute("class") or ""), state.inner_text()
    shot(page.page, "asset", web["tmp"])
    page.page.uncheck("#toggles input[value=face_mtcnn]")
    assert page.page.locator("#overlay g[data-model=face_mtcnn]").count() == 0
    # OCR lines of the sign are outlined too, and the markup it reads stays text
    lines = annotations(s, ids["markup"], "ocr_ppocr")[0]["payload"]["lines"]
    page.goto(f"/asset/{ids['markup']}")
    assert lines and page.page.locator("#overlay g[data-model=ocr_ppocr]").count() == len(lines)
    text = page.page.locator("details.annotation[data-model=ocr_ppocr] pre").text_content() or ""
    assert "<script>" in text and "<b>BREAKING</b>" in text, text
    assert not page.pwned()


def test_video_page_plays_and_keyframes_seek(web: dict[str, Any], page: Page) -> None:
    page.goto(f"/asset/{web['ids']['video']}")
    frames = page.page.locator("button.keyframe")
    assert frames.count() >= 3, "one strip image per keyframe"
    assert page.page.get_attribute("#player", "preload") == "none", "the original is loaded only when asked"
    target = frames.nth(2)
    t_ms = int(target.get_attribute("data-t") or 0)
    target.click()
    page.page.wait_for_function(f"() => Math.abs(document.querySelector('#player').currentTime - {t_ms / 1000}) < 0.6")
    opened = page.page.locator("details.annotation[open]")
    assert opened.count() >= 1 and all(d.get_attribute("data-t") == str(t_ms) for d in opened.all())
    shot(page.page, "video", web["tmp"])


def test_region_draw_runs_region_search(web: dict[str, Any], page: Page) -> None:
    page.goto(f"/asset/{web['ids']['chelsea']}")
    page.page.wait_for_function("() => document.querySelector('#picture').naturalWidth > 0")
    box = page.page.locator("#picture").bounding_box()
    assert box is not None
    mouse = page.page.mouse
    mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.1)
    mouse.down()
    mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=8)
    mouse.up()
    page.page.wait_for_selector("#region-results li.hit")
    assert "result(s) for the selected region" in page.page.inner_text("#region-results .status")
    assert page.page.locator("#region-results li.hit").count() >= 1
    shot(page.page, "region", web["tmp"])


# ------------------------------------------------------------------------------ by example
def test_drag_and_drop_reverse_search_finds_the_original(web: dict[str, Any], page: Page,
                                                         sample_files: list[Path]) -> None:
    page.goto("/example")
    # a re-encoded, smaller copy of the coffee photo, dropped as a file (a real drop event with a DataTransfer)
    copy = _jpeg(photo("coffee")[::2, ::2], 60)
    page.page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
            const zone = document.querySelector('#dropzone');
            zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
            zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""", [base64.b64encode(copy).decode(), "copy.jpg"])
    page.page.wait_for_selector("#ndd-results li.hit")
    found = [li.get_attribute("data-asset") for li in page.page.locator("#ndd-results li.hit").all()]
    assert web["ids"]["coffee"] in found
    page.page.wait_for_selector("#similar-results li.hit")
    shot(page.page, "example", web["tmp"])


# ------------------------------------------------------------------------------ upload
def test_upload_fills_in_live_and_shows_rejections(web: dict[str, Any], page: Page, tmp_path: Path) -> None:
    page.login()
    page.goto("/upload")
    page.page.evaluate("() => { window.__sameDocument = true; }")
    fresh = tmp_path / "harbour.jpg"
    fresh.write_bytes(_jpeg(photo("rocket")[40:300, 60:400], 88))
    bad = tmp_path / "notes.pdf"
    bad.write_bytes(b"%PDF-1.4 not a picture")
    started = time.monotonic()
    page.page.set_input_files("#upload-files", [str(fresh), str(bad)])
    page.page.wait_for_selector("li.upload.rejected")
    assert "415" in page.page.inner_text("li.upload.rejected .state")
    row = page.page.locator("li.upload[data-asset]")
    row.wait_for()
    assert row.locator(".models li").count() == len(MODELS)
    shot(page.page, "upload-pending", web["tmp"])
    page.page.wait_for_selector("li.upload[data-done=true]", timeout=180000)
    TIMINGS["upload_to_all_models_done"] = round((time.monotonic() - started) * 1000, 1)
    assert all("done" in (c.get_attribute("class") or "") for c in row.locator(".models li").all())
    assert page.page.evaluate("() => window.__sameDocument === true"), "states arrived without a reload"
    shot(page.page, "upload", web["tmp"])


# ------------------------------------------------------------------------------ NSFW, projects, hostile text
def test_nsfw_results_are_blurred_until_revealed_and_can_be_excluded(web: dict[str, Any], page: Page) -> None:
    rocket = web["ids"]["rocket"]
    page.goto("/?q=rocket")
    hit = page.page.locator(f"li.hit[data-asset='{rocket}']")
    assert "nsfw" in (hit.get_attribute("class") or "")
    blur = "el => getComputedStyle(el).filter"
    assert "blur" in hit.locator("img").evaluate(blur)
    shot(page.page, "nsfw", web["tmp"])
    hit.locator("button.reveal").click()
    assert hit.locator("img").evaluate(blur) == "none"
    page.goto("/?q=rocket&nsfw=exclude")
    assert page.page.locator(f"li.hit[data-asset='{rocket}']").count() == 0


def test_projects_create_add_and_search_within(web: dict[str, Any], page: Page) -> None:
    page.login()
    page.goto("/projects")
    page.page.fill("#new-project input[name=name]", "Space desk")
    page.page.click("#new-project button[type=submit]")
    page.page.wait_for_url("**/?project=**")
    project_url = page.page.url
    assert _count(page) == 0
    page.goto(f"/asset/{web['ids']['astronaut']}")
    page.page.select_option("#project", label="Space desk")
    page.page.click("#add-project button[type=submit]")
    page.page.wait_for_function("() => document.querySelector('#add-project .status').textContent.startsWith('Added')")
    page.page.goto(project_url)
    assert _count(page) == 1
    assert page.page.locator("#grid li.hit").first.get_attribute("data-asset") == web["ids"]["astronaut"]
    shot(page.page, "project", web["tmp"])
    page.page.click("#grid li.hit button.remove")
    page.page.wait_for_function("() => document.querySelectorAll('#grid li.hit').length === 0")
    page.page.reload()
    assert _count(page) == 0


def test_hostile_strings_render_as_text(web: dict[str, Any], page: Page) -> None:
    ids = web["ids"]
    page.goto("/?q=coffee")
    page.goto("/?collection=%3Cb%3Edesk%3C%2Fb%3E")
    assert _count(page) == 1
    name = page.page.locator("#grid li.hit .name").inner_text()
    assert name == HOSTILE_TITLE
    page.goto(f"/asset/{ids['hostile']}")
    assert page.page.locator("h1").inner_text() == HOSTILE_TITLE
    assert HOSTILE_NAME in page.page.locator("dl.facts").first.inner_text()
    # only the page's own JSON data islands are scripts in the page body, none executable
    assert page.page.locator("img[src=x]").count() == 0
    assert page.page.locator("main script:not([type='application/json'])").count() == 0
    page.goto(f"/asset/{ids['markup']}")
    assert not page.pwned()
    shot(page.page, "hostile", web["tmp"])


def test_login_needed_when_anonymous_read_is_off_and_the_key_stays_out_of_urls(web: dict[str, Any]) -> None:
    import httpx

    s = web["settings"].model_copy(deep=True)
    s.security.anonymous_read = False
    with served(create_app(s)) as base:
        ctx = web["browser"].new_context()
        pg = ctx.new_page()
        urls: list[str] = []
        pg.on("request", lambda r: urls.append(r.url))
        pg.goto(base + "/?q=cat")
        assert pg.url.startswith(base + "/login?next=")
        pg.fill("#key", "wrong-key")
        pg.click("form.login button[type=submit]")
        assert "not valid" in pg.inner_text(".error")
        pg.fill("#key", "dev-key")
        pg.click("form.login button[type=submit]")
        pg.wait_for_url(base + "/?q=cat")
        assert pg.locator("#grid li.hit").count() > 0
        assert pg.locator("#grid li.hit img").first.evaluate("img => img.naturalWidth") > 0
        cookie = next(c for c in ctx.cookies() if c["name"] == "argus_key")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert not any("dev-key" in u for u in urls)
        assert pg.evaluate("() => document.cookie") == "", "page scripts cannot read the key"
        ctx.close()
        # the cookie alone does not authorise a write: another site's form cannot send the CSRF header
        r = httpx.post(base + "/v1/projects", json={"name": "x"}, cookies={"argus_key": "dev-key"})
        assert r.status_code == 403 and "x-argus-csrf" in r.text
        r = httpx.post(base + "/v1/projects", json={"name": "x"}, cookies={"argus_key": "dev-key"},
                       headers={"X-Argus-CSRF": "1"})
        assert r.status_code == 201


# ------------------------------------------------------------------------------ people
def test_people_name_once_and_search_by_person(web: dict[str, Any], page: Page) -> None:
    ids = web["ids"]
    page.login()
    from retrieval.people.queries import asset_faces

    person_id = asset_faces(web["settings"], ids["obama"])[0]["person_id"]
    assert person_id and asset_faces(web["settings"], ids["obama2"])[0]["person_id"] == person_id
    page.goto("/people")
    person = page.page.locator(f"#people li.person[data-person='{person_id}']")
    assert "2 assets" in person.inner_text()
    assert person.locator("a.face img").evaluate("img => img.naturalWidth") > 0
    person.locator("a.name").click()
    page.page.wait_for_url(f"**/people/{person_id}")
    page.page.fill("#name-person input[name=name]", "Barack Obama")
    page.page.click("#name-person button[type=submit]")
    page.page.wait_for_function("() => document.querySelector('h1').textContent === 'Barack Obama'")
    assert page.page.locator(".face-card").count() == 2
    assert "naming" in page.page.inner_text("ul.audit").lower() or page.page.locator("ul.audit li").count() >= 1
    shot(page.page, "person", web["tmp"])
    page.goto(f"/?person={person_id}")
    found = {h.get_attribute("data-asset") for h in page.page.locator("#grid li.hit").all()}
    assert found == {ids["obama"], ids["obama2"]}
    assert "Barack Obama" in page.page.inner_text(".facets")
    page.goto(f"/asset/{ids['obama']}")
    assert page.page.locator(".asset-people a", has_text="Barack Obama").count() == 1
    page.goto("/people")
    shot(page.page, "people", web["tmp"])


# ------------------------------------------------------------------------------ 10k assets
def test_page_loads_on_ten_thousand_assets(web: dict[str, Any], stack_settings: Settings) -> None:
    """Timing only (printed, not asserted): the first search page and an asset page over 10,000 synthetic assets."""
    from tests.support.synthetic import synthetic_archive

    s = isolated_settings(stack_settings, "t_web_10k")
    s.models = list(MODELS)
    some_id = synthetic_archive(s, 10_000)
    with served(create_app(s)) as base:
        pg = Page({**web, "base": base})
        pg.goto("/", timing="search_page_10k")
        assert int(pg.page.text_content("#total") or 0) == 10_000
        pg.goto("/?q=label0042", timing="search_words_10k")
        pg.goto(f"/asset/{some_id}", timing="asset_page_10k")
        assert pg.page.locator("h1").count() == 1
        pg.close()
    with db.connect(s) as conn:
        assert conn.execute("SELECT count(*) AS n FROM assets").fetchone()["n"] == 10_000
