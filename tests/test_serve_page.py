"""The live page at ``/`` in a real headless browser (Debian's chromium and chromium-driver, driven
by Selenium): log in with the token, add a stream from the form, see its events arrive over
Server-Sent Events, see a clip play, remove the stream. The bundled model on a bundled sample,
so the events are real ones.

Evidence clips come from ``watch --clips`` (the live-streams issue); until that lands here the
test writes a VP9 WebM clip (OpenCV) into the stream's clip folder, which the service lists and
serves as it would a clip of the watcher's."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from serving import ServiceThread

from fvdeploy.runtime.options import ClassifyOptions
from fvdeploy.serve.settings import ServeSettings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


def write_webm(path: Path, frames: int = 50) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP90"), 25.0, (160, 120))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write VP9 WebM")
    for i in range(frames):
        frame = np.full((120, 160, 3), 40, np.uint8)
        frame[40:80, (i * 3) % 120 : (i * 3) % 120 + 40] = (0, 200, 255)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_page_adds_a_stream_shows_its_events_plays_a_clip_and_removes_it(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    settings = ServeSettings(
        classify=ClassifyOptions(device="cpu"),  # the bundled model: real events on the samples
        token="page-token",
        allow_root=[str(REPO / "samples")],
        clips_dir=str(tmp_path / "clips"),
    )
    wait = WebDriverWait(browser, 90, poll_frequency=0.2)
    with ServiceThread(settings) as server:
        browser.get(server.url + "/?token=page-token")  # sets the cookie, then the page
        wait.until(lambda d: d.find_element(By.ID, "ready").text.startswith("ready"))
        Select(browser.find_element(By.ID, "kind")).select_by_value("path")
        browser.find_element(By.ID, "source").send_keys(str(REPO / "samples" / "move_left.mp4"))
        for field, value in (("window", "0.64"), ("stride", "0.32")):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        browser.find_element(By.ID, "add-button").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#streams tbody tr"))
        row = browser.find_element(By.CSS_SELECTOR, "#streams tbody tr")
        sid = row.get_attribute("id").removeprefix("stream-")
        assert browser.find_element(By.ID, "message").text == ""

        # events arrive over SSE and are listed as they come
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#events li.event"))
        event = browser.find_element(By.CSS_SELECTOR, "#events li.event")
        assert event.get_attribute("data-stream") == sid and event.get_attribute("data-label") == "move_left"
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"#stream-{sid}").get_attribute("data-state") == "ended")

        # a clip in the stream's folder is listed and plays in the page
        folder = Path(settings.clips_dir) / sid
        folder.mkdir(parents=True, exist_ok=True)
        write_webm(folder / "event-0001.webm")
        (folder / "event-0001.json").write_text(json.dumps({"label": "move_left", "start_s": 0.0, "end_s": 1.28}))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "video.clip"))
        wait.until(
            lambda d: d.execute_script(
                "const v = document.querySelector('video.clip'); return v.readyState >= 2 && v.currentTime > 0;"
            )
        )
        caption = browser.find_element(By.CSS_SELECTOR, "#clips figcaption").text
        assert "move_left" in caption and "event-0001.webm" in caption
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
