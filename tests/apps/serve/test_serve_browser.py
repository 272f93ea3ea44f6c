"""``hcm serve`` in a real browser: headless Chromium (selenium) on a real server at a loopback port,
through runs -> run (its clip playing) -> explain, and predict (upload a clip, see the prediction).
Screenshots are kept as test artifacts (``$HCM_TEST_ARTIFACTS``, else the test's temporary folder);
docs/images/serve-*.png are these screenshots. Without a browser the tests are skipped with the
reason, unless ``HCM_REQUIRE_BROWSER=1`` (CI) makes that a failure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hcm_browser import artifacts, browser_or_skip

pytest.importorskip("fastapi", reason="hcm serve's web packages: pip install -e '.[serve]'")

pytestmark = pytest.mark.slow


@pytest.fixture
def driver():
    browser = browser_or_skip("1280,1000")
    yield browser
    browser.quit()


def wait_for(driver, script: str, seconds: float = 60.0):
    """Poll ``script`` (JavaScript returning a value) until it is truthy."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: d.execute_script(script))


def screenshot(driver, folder: Path, name: str) -> Path:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 120, 6000))
    driver.execute_script("window.scrollTo(0, 0)")
    path = folder / name
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def no_console_errors(driver) -> None:
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors


def broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);")


def test_runs_run_and_explain_in_chromium(driver, live_server, served, tmp_path: Path) -> None:
    folder = artifacts(tmp_path)
    driver.get(f"{live_server}/runs")
    assert driver.title == "hcm serve: runs"
    listed = [a.text for a in driver.find_elements("css selector", "#runs a.run")]
    assert listed == served.runs
    screenshot(driver, folder, "serve-runs.png")

    driver.find_element("link text", served.runs[-1]).click()
    wait_for(driver, "return document.getElementById('samples') !== null")
    body = driver.find_element("tag name", "body").text
    for heading in ("Metrics on test", "Training curves", "Samples of test"):
        assert heading in body
    assert broken_images(driver) == []
    first = driver.find_element("css selector", "#samples tr:nth-child(2) a.explain").text
    driver.find_element("css selector", "#samples tr:nth-child(2) a.play").click()
    player = driver.find_element("id", "sample-player")
    assert player.is_displayed() and player.get_attribute("data-playing") == first
    state = wait_for(driver, "const p = document.getElementById('sample-player');"
                             "return p.error ? 'error ' + p.error.code : (p.readyState >= 1 ? 'ready' : null);")
    assert state == "ready"  # the clip came from the workspace and the browser decodes it
    assert driver.execute_script("return document.getElementById('sample-player').duration") > 0
    screenshot(driver, folder, "serve-run.png")

    driver.find_element("css selector", "#samples tr:nth-child(2) a.explain").click()
    wait_for(driver, "return document.querySelector('img.picture') !== null", 120)
    body = driver.find_element("tag name", "body").text
    assert f"Item {first}" in body and "What made the prediction" in body
    assert re.fullmatch(r"[+-]\d+\.\d{3}", driver.find_element("id", "prediction").text)
    assert broken_images(driver) == []
    wait_for(driver, "return document.getElementById('player').readyState >= 1")
    screenshot(driver, folder, "serve-explain.png")
    no_console_errors(driver)


def test_predict_on_an_uploaded_clip_in_chromium(driver, live_server, served, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    folder = artifacts(tmp_path)
    driver.get(f"{live_server}/predict")
    Select(driver.find_element("name", "run")).select_by_value(served.runs[-1])
    driver.find_element("css selector", "input[type=file]").send_keys(str(served.clip))
    driver.find_element("name", "text").send_keys("What a wonderful and happy day this was")
    driver.find_element("css selector", "#predict button[type=submit]").click()
    wait_for(driver, "return document.getElementById('result') || document.getElementById('error')", 180)
    body = driver.find_element("tag name", "body").text
    assert "error" not in [e.get_attribute("id") for e in driver.find_elements("css selector", "p.error")], body
    assert f"Prediction for {served.clip.name}" in body
    score = driver.find_element("id", "score").text
    assert re.fullmatch(r"[+-]\d+\.\d{3}", score)
    assert driver.find_element("id", "label").text == ("positive" if float(score) > 0 else "negative")
    assert "What made the prediction" in body and broken_images(driver) == []
    screenshot(driver, folder, "serve-predict.png")

    driver.get(f"{live_server}/predict")  # a file that is not a clip, named .mp4: an error on the page
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a clip")
    driver.find_element("css selector", "input[type=file]").send_keys(str(fake))
    driver.find_element("css selector", "#predict button[type=submit]").click()
    wait_for(driver, "return document.getElementById('error')", 60)
    assert "notes.mp4 is not a usable clip" in driver.find_element("id", "error").text
