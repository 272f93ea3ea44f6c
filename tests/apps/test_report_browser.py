"""`hcm report` opened in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by selenium renders the page with no console error, its script builds the contents, every image
decodes, and the sections and numbers are on screen. The screenshot is kept as a test artifact in
``$HCM_TEST_ARTIFACTS`` (else the test's temporary folder).

Without a browser the test is skipped with the reason, unless ``HCM_REQUIRE_BROWSER=1`` (CI, whose
``.ci/run`` installs the packages) makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hcm.apps.report import cell, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL = "apt-get install chromium chromium-driver (Debian) and pip install selenium"


def browser_or_skip():
    """A headless Chrome(ium) WebDriver, or a skip (a failure under HCM_REQUIRE_BROWSER=1) saying why not."""
    def missing(reason: str):
        if os.environ.get("HCM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; HCM_REQUIRE_BROWSER=1 asks for the browser test ({INSTALL})")
        pytest.skip(f"{reason}: {INSTALL}")

    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed")
    binary = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        missing(f"no Chromium browser ({binary}) or chromedriver ({driver_path}) on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except WebDriverException as error:
        missing(f"Chromium did not start ({error.msg})")


@pytest.mark.slow
def test_report_renders_in_chromium_without_console_errors(small_runs, tmp_path: Path) -> None:
    page = write_report([small_runs.full, small_runs.no_cdc], tmp_path / "report.html")
    artifacts = Path(os.environ.get("HCM_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    driver = browser_or_skip()
    try:
        driver.get(page.as_uri())
        assert small_runs.full.name in driver.title
        toc = [link.text for link in driver.find_elements("css selector", "nav#toc a")]
        assert toc == ["Comparison of 2 runs", f"Run {small_runs.full.name}", f"Run {small_runs.no_cdc.name}"]
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);")
        assert broken == []
        assert len(driver.find_elements("css selector", "img")) >= 9  # overlaid + per run: curves, plots, t-SNE
        body = driver.find_element("tag name", "body").text
        for heading in ("Comparison of 2 runs", "Training curves", "Metrics on test", "Worst errors on test"):
            assert heading in body
        metrics = json.loads((small_runs.full / "eval" / "test" / "metrics.json").read_text())["metrics"]
        cells = [td.text for td in driver.find_elements("css selector", "#run-1 table.metrics td.num")]
        assert cells[:2] == [cell("mae", metrics["mae"]), cell("corr", metrics["corr"])]
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, min(int(height) + 100, 12000))
        assert driver.save_screenshot(str(artifacts / "report-browser.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == [], errors
        driver.get("data:text/html,<script>throw new Error('planted')</script>")  # the check can fail
        assert any("planted" in entry["message"] for entry in driver.get_log("browser"))
    finally:
        driver.quit()
    assert (artifacts / "report-browser.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
