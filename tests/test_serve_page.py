"""The live page at ``/`` in a real headless browser (Debian's chromium and chromium-driver, driven
by Selenium): log in with the token, add a stream from the form, see its event arrive over
Server-Sent Events, see the event's evidence clip play, remove the stream. The bundled model on a
generated Move4 recording of one action, so the event and its clip are real ones."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from browser import chromium, missing
from serving import ServiceThread

from fvdeploy.runtime.options import ClassifyOptions
from fvdeploy.serve.settings import ServeSettings

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        driver.set_window_size(1280, 1100)
        yield driver


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """8 s of move_left (Move4, 64 px, 25 fps), the length the event rules need to call it an action."""
    from fvdeploy.training.move4 import render_recording, write_recording

    folder = tmp_path_factory.mktemp("recordings")
    return write_recording(folder / "move_left.mp4", render_recording(("move_left",), action_s=8.0, seed=3))


def test_page_adds_a_stream_shows_its_events_plays_a_clip_and_removes_it(browser, recording, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    settings = ServeSettings(
        # the bundled model sees ~4 frames a cluster, as it was trained: G = 50 in 8-s windows (docs/watch.md)
        classify=ClassifyOptions(device="cpu", clusters=50),
        token="page-token",
        allow_root=[str(recording.parent)],
        clips_dir=str(tmp_path / "clips"),
    )
    # The page re-renders a stream's row and the event list as records arrive, so an element found
    # a moment ago may be gone: attributes are read in the page in one step, and waits retry.
    wait = WebDriverWait(browser, 90, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))

    def attr(selector: str, name: str) -> str | None:
        return browser.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            selector,
            name,
        )

    with ServiceThread(settings) as server:
        browser.get(server.url + "/?token=page-token")  # sets the cookie, then the page
        wait.until(lambda d: d.find_element(By.ID, "ready").text.startswith("ready"))
        Select(browser.find_element(By.ID, "kind")).select_by_value("path")
        browser.find_element(By.ID, "source").send_keys(str(recording))  # the form's own window and stride
        browser.find_element(By.ID, "add-button").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#streams tbody tr"))
        sid = attr("#streams tbody tr", "id").removeprefix("stream-")
        assert browser.find_element(By.ID, "message").text == ""

        # events arrive over SSE and are listed as they come
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#events li.event"))
        assert attr("#events li.event", "data-stream") == sid and attr("#events li.event", "data-label") == "move_left"
        wait.until(lambda d: attr(f"#stream-{sid}", "data-state") == "ended")

        # the event's evidence clip (watch --clips, in the stream's folder) is listed and plays in the page
        assert list((Path(settings.clips_dir) / sid).glob("*.mp4"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "video.clip"))
        wait.until(
            lambda d: d.execute_script(
                "const v = document.querySelector('video.clip'); return v.readyState >= 2 && v.currentTime > 0;"
            )
        )
        caption = browser.execute_script("return document.querySelector('#clips figcaption').innerText;")
        assert "move_left" in caption and ".mp4" in caption
        time.sleep(0.5)
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("FVDEPLOY_SCREENSHOTS"):
            shutil.copy(shot, Path(os.environ["FVDEPLOY_SCREENSHOTS"]) / "serve-page.png")
        assert shot.stat().st_size > 10_000

        # remove it from the page
        browser.find_element(By.CSS_SELECTOR, f"#stream-{sid} button.remove").click()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f"#stream-{sid}"))
        assert server.service.streams == {}
