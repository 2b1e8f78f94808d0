"""`mocohd demo` in a real browser: headless Chromium from the system packages (.ci/install installs
chromium and chromium-driver), driven by selenium, against a `mocohd demo` process on 127.0.0.1.

It opens the page, sets a seed, presses Generate, waits until the video element has decoded a frame,
reads that frame's pixels back through a canvas, and checks another seed's video shows other pixels.
MOCOHD_DEMO_SCREENSHOT=PATH also saves the page (docs/demo.png is made so).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from test_demo import serve_demo, stop

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = next((path for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(path)), None)
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
if (CHROMIUM is None or DRIVER is None) and os.environ.get("CI"):  # .ci/install installs them: CI runs this test
    raise RuntimeError("CI without chromium and chromium-driver: .ci/install should have installed them")
pytestmark = [pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                 reason="needs chromium and chromium-driver (Debian packages; .ci/install)"),
              pytest.mark.timeout(420)]
WAIT = 120  # seconds for any one thing the page does

# The frame the <video> shows, as the browser decoded it: its pixels' SHA-256 (null until decodable).
READ_FRAME = """
const video = document.querySelector('#video video');
if (!video || !video.src || video.readyState < 2 || !video.videoWidth) return null;
video.pause();
const canvas = document.createElement('canvas');
canvas.width = video.videoWidth; canvas.height = video.videoHeight;
const context = canvas.getContext('2d');
context.drawImage(video, 0, 0);
const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
let sum = 0, spread = 0;
for (let i = 0; i < pixels.length; i += 4) { sum += pixels[i] + pixels[i + 1] + pixels[i + 2]; }
const mean = sum / (pixels.length / 4 * 3);
for (let i = 0; i < pixels.length; i += 4) { spread += Math.abs(pixels[i] - mean); }
return {src: video.src, width: video.videoWidth, height: video.videoHeight, duration: video.duration,
        mean: mean, spread: spread / (pixels.length / 4), pixels: Array.from(pixels.slice(0, 4096)).join(',')};
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    out = tmp_path_factory.mktemp("demo-browser") / "out"
    process, url = serve_demo(out)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1100", "--no-first-run", "--disable-extensions", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required", "--proxy-server=direct://", "--proxy-bypass-list=*",
                 f"--user-data-dir={out.parent / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        driver.get(url)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        stop(process)


def wait_for(what, condition, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def generate_with_seed(driver, seed: int, previous_src: str | None) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = wait_for("the seed box", lambda: driver.find_elements(By.CSS_SELECTOR, "#seed input"))[0]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(seed))
    box.send_keys(Keys.TAB)  # the number is committed on blur
    assert box.get_attribute("value") == str(seed)
    driver.find_element(By.CSS_SELECTOR, "#generate").click()
    frame = wait_for(f"a playable video of seed {seed}",
                     lambda: (lambda f: f if f and f["src"] != previous_src else None)(driver.execute_script(READ_FRAME)))
    wait_for(f"the message of seed {seed}", lambda: f"seed {seed}" in driver.find_element(By.ID, "status").text)
    return frame


def test_generate_in_the_browser_plays_a_video_per_seed(page, tmp_path):
    from selenium.webdriver.common.by import By

    wait_for("the page", lambda: page.find_elements(By.CSS_SELECTOR, "#generate"))
    first = generate_with_seed(page, 7, None)
    assert first["width"] > 64 and first["height"] > 64 and first["duration"] > 0  # a grid of 64 px videos
    assert first["spread"] > 5  # an image, not a blank frame
    second = generate_with_seed(page, 8, first["src"])
    assert second["width"] == first["width"]
    assert hashlib.sha256(second["pixels"].encode()).digest() != hashlib.sha256(first["pixels"].encode()).digest()
    links = [a.get_attribute("href") for a in page.find_elements(By.CSS_SELECTOR, "#files a")]
    assert any(link and link.endswith(".mp4") for link in links) and any(
        link and link.endswith("latents.npz") for link in links), links
    shot = Path(os.environ.get("MOCOHD_DEMO_SCREENSHOT") or tmp_path / "demo.png")
    page.set_window_size(1400, 1400)
    page.execute_script("window.scrollTo(0, 0); document.querySelector('#video video').currentTime = 0.4;")
    time.sleep(0.5)
    assert page.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_bad_input_in_the_browser_is_a_message_and_the_page_keeps_working(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before = wait_for("a video", lambda: page.execute_script(READ_FRAME))
    box = page.find_element(By.CSS_SELECTOR, "#seed input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("-4")
    box.send_keys(Keys.TAB)
    page.find_element(By.CSS_SELECTOR, "#generate").click()
    wait_for("the error message", lambda: "seed must be a whole number" in page.find_element(By.TAG_NAME, "body").text)
    assert "Traceback" not in page.find_element(By.TAG_NAME, "body").text
    after = generate_with_seed(page, 9, before["src"])  # the server still serves
    assert after["spread"] > 5
