"""The page at `GET /`, in a real headless browser: Debian's chromium driven by selenium (through
the system's chromedriver; nothing is downloaded). It uploads a generated scene, waits for the
overlay and compares the PNG the page shows, byte for byte, with `ocrnet predict --overlay`'s
file; the screenshot is left in the test's tmp_path. Skipped, saying why, where no chromium is
installed (`make test` installs it with apt where apt is available)."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openvino")
httpx = pytest.importorskip("httpx")
webdriver = pytest.importorskip("selenium.webdriver")

from _serve_helpers import Server, expected, images  # noqa: E402

#: Where Debian's chromium / chromium-driver (and Ubuntu's or Google's builds) put them.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> Any:
    binary = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no headless browser: chromium and chromedriver are not installed (on "
                    "Debian: apt-get install chromium chromium-driver; make test does it)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest.fixture(scope="module")
def page_server(serve_main: Server) -> Server:
    """The session's shared server (conftest.py), predict's overlay already made."""
    return serve_main


def test_page_is_self_contained(page_server: Server) -> None:
    response = httpx.get(f"{page_server.url}/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    # Works offline: nothing but this server's own relative URLs.
    assert "http://" not in response.text and "https://" not in response.text
    assert 'fetch("v1/segment?format=overlay"' in response.text


def test_page_in_a_headless_browser_shows_predicts_overlay(page_server: Server,
                                                           tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.set_script_timeout(60)
        browser.get(f"{page_server.url}/")
        browser.find_element(By.ID, "file").send_keys(str(images()["b.jpg"]))
        body = browser.find_element(By.TAG_NAME, "body")
        WebDriverWait(browser, 120, poll_frequency=0.2).until(
            lambda _: body.get_attribute("data-state") in ("done", "error"))
        state = body.get_attribute("data-state")
        browser.save_screenshot(str(tmp_path / "page.png"))
        message = browser.find_element(By.ID, "message").text
        assert state == "done", message
        # The bytes of the PNG the overlay <img> shows (its blob: URL), read inside the page.
        shown = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(document.getElementById('overlay').src).then(r => r.arrayBuffer())"
            ".then(b => { let s = ''; for (const x of new Uint8Array(b)) "
            "s += String.fromCharCode(x); done(btoa(s)); });")
        assert base64.b64decode(shown) == expected()["b.jpg", "overlay"]
        assert browser.find_element(By.ID, "latency").text.endswith("ms")
        assert browser.find_element(By.ID, "batch").text.isdigit()
        assert browser.find_element(By.ID, "size").text == "128×64"
        assert browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert "openvino fp32" in browser.find_element(By.ID, "model").text
    finally:
        browser.quit()
    assert (tmp_path / "page.png").stat().st_size > 0
