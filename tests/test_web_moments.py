"""Moments in the web app, in a real browser (Debian's chromium through Playwright) against the real stack: a video
with synthesized speech goes through the speech model; search shows its best moment with the time, the moment opens
the asset page with the player at that time, and the transcript's lines seek the player."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api.app import create_app
from core.settings import Settings
from tests.support import speech as sp
from tests.support.browser import chromium_missing, launched_browser, served, shot
from tests.support.modelrun import model_run
from tests.support.models import photo
from tests.support.stack import load_models

pytestmark = [pytest.mark.integration,
              # justified: no chromium here (bootstrap installs it as root); CI runs these
              pytest.mark.skipif(bool(chromium_missing()), reason=chromium_missing() or "")]

LINE_1 = "Good evening. Here is the news from the city council."
LINE_2 = "The harbour bridge will close for repairs next week."
AT_1, AT_2 = 1.0, 8.0


@pytest.fixture(scope="module")
def web(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sp.need_espeak()
    load_models(stack_settings, ["speech_whisper"])
    pcm = sp.track([(AT_1, sp.say(LINE_1)), (AT_2, sp.say(LINE_2))], 14)
    hostile = sp.track([(0.5, sp.say("script alert one"))], 4)
    media = {"news": (sp.speech_video([(photo("astronaut"), 7.0), (photo("coffee"), 7.0)], pcm), "council.mp4"),
             "hostile": (sp.wav(hostile), '<img src=x onerror="window.__pwned=1">.wav')}
    with model_run(stack_settings, "t_web_moments", ["speech_whisper"], media) as (s, ids), \
            served(create_app(s)) as base, launched_browser() as browser:
        yield {"base": base, "ids": ids, "browser": browser, "tmp": tmp_path_factory.mktemp("web-moments")}


def _page(web: dict[str, Any]) -> Any:
    ctx = web["browser"].new_context(viewport={"width": 1366, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(20000)
    return page


def _player_at(page: Any, seconds: float, tolerance: float = 0.6) -> None:
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('#player').currentTime - {seconds}) < {tolerance}")


def test_search_shows_the_moment_and_it_opens_the_player_there(web: dict[str, Any]) -> None:
    page = _page(web)
    page.goto(web["base"] + "/?q=harbour+bridge", wait_until="load")
    hit = page.locator(f"li.hit[data-asset='{web['ids']['news']}']")
    moment = hit.locator("ol.moments a.moment[data-kind=speech]").first
    assert moment.count() == 1, "the video hit lists where the words are said"
    at = moment.locator(".at").inner_text()
    assert at in ("00:07", "00:08", "00:09"), at
    assert moment.locator("mark").first.inner_text().lower() in ("harbour", "bridge")
    shot(page, "search-moments", web["tmp"])
    href = moment.get_attribute("href") or ""
    t = float(href.split("?t=")[1])
    assert abs(t - AT_2) < 1.0, href
    moment.click()
    page.wait_for_url(f"**/asset/{web['ids']['news']}?t=*")
    _player_at(page, t)
    page.context.close()


def test_transcript_lines_seek_the_player(web: dict[str, Any]) -> None:
    page = _page(web)
    page.goto(f"{web['base']}/asset/{web['ids']['news']}", wait_until="load")
    cues = page.locator("#transcript button.cue")
    assert cues.count() >= 2, "one line per sentence"
    assert "evening" in cues.nth(0).inner_text().lower()
    assert page.get_attribute("#player", "preload") == "none", "nothing loads until asked"
    bridge = cues.filter(has_text="bridge").first
    bridge.click()
    _player_at(page, int(bridge.get_attribute("data-t") or 0) / 1000)
    assert abs(int(bridge.get_attribute("data-t") or 0) / 1000 - AT_2) < 1.0
    cues.nth(0).click()
    _player_at(page, int(cues.nth(0).get_attribute("data-t") or 0) / 1000)
    assert page.locator("#player track[kind=subtitles]").count() == 1
    vtt = page.request.get(f"{web['base']}/v1/assets/{web['ids']['news']}/transcript.vtt")
    assert vtt.ok and vtt.text().startswith("WEBVTT")
    shot(page, "asset-transcript", web["tmp"])
    page.context.close()


def test_audio_asset_page_and_hostile_name(web: dict[str, Any]) -> None:
    page = _page(web)
    page.goto(f"{web['base']}/asset/{web['ids']['hostile']}", wait_until="load")
    assert page.locator("audio#player").count() == 1, "an audio file gets an audio player"
    assert page.locator("#transcript button.cue").count() >= 1
    assert page.evaluate("() => window.__pwned") is None, "a hostile file name renders as text"
    page.locator("#transcript button.cue").first.click()
    _player_at(page, int(page.locator("#transcript button.cue").first.get_attribute("data-t") or 0) / 1000)
    page.context.close()
