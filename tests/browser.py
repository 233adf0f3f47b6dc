"""A real headless browser for the tests: Debian's ``chromium`` driven by ``chromedriver`` through
Selenium, loading pages from a bounded HTTP server on 127.0.0.1. ``missing()`` says why it cannot
run here (the tests skip with that reason; ``.ci/run`` installs chromium and chromium-driver)."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
PAGE_TIMEOUT_S = 30


def _binary() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if importlib.util.find_spec("selenium") is None:
        return "needs selenium (pip install selenium; in the dev extra)"
    if _binary() is None:
        return "needs Chromium (apt-get install chromium; .ci/run installs it)"
    if shutil.which("chromedriver") is None:
        return "needs chromedriver (apt-get install chromium-driver; .ci/run installs it)"
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test output is not the place for an access log
        pass


@contextmanager
def served(folder: Path):
    """An HTTP server on 127.0.0.1 (a free port) serving ``folder``; yields its base URL. It serves
    until the block ends (the thread is a daemon and is shut down then)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def chromium():
    """A headless Chromium session (muted, autoplay without a gesture)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary()
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT_S)
        driver.set_script_timeout(PAGE_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


# Waits (bounded) for the <video> to have data, then plays it for a second: what a viewer gets.
PLAY_SCRIPT = """
const done = arguments[arguments.length - 1];
const v = document.getElementById('v');
const t0 = Date.now();
function report(extra) {
  done(Object.assign({readyState: v.readyState, duration: v.duration, error: v.error && v.error.code,
                      width: v.videoWidth, height: v.videoHeight}, extra || {}));
}
function wait() {
  if (v.readyState >= 2 || v.error || Date.now() - t0 > 20000) start(); else setTimeout(wait, 50);
}
function start() {
  if (v.readyState < 2) { report(); return; }
  v.play().then(() => {
    const c0 = v.currentTime;
    setTimeout(() => report({t0: c0, t1: v.currentTime}), 1000);
  }).catch(e => report({playError: String(e)}));
}
v.load(); wait();
"""


def play(folder: Path, *names: str) -> list[dict]:
    """For each of ``names`` (files in ``folder``), load a page with ``<video muted autoplay>`` of it
    in one Chromium session, wait until it has data (at most 20 s), play it for a second; each
    result has readyState, duration, error code, the video's size, and currentTime before (``t0``)
    and after (``t1``) that second."""
    page = folder / "_play.html"
    out = []
    try:
        with served(folder) as url, chromium() as driver:
            for name in names:
                page.write_text(f'<!doctype html><video id="v" muted autoplay playsinline src="{name}"></video>\n')
                driver.get(f"{url}/{page.name}?{len(out)}")
                out.append(driver.execute_async_script(PLAY_SCRIPT))
    finally:
        page.unlink(missing_ok=True)
    return out
