"""`hcm report` opened in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by selenium renders the page with no console error, its script builds the contents, every image
decodes, and the sections and numbers are on screen. The screenshot is kept as a test artifact in
``$HCM_TEST_ARTIFACTS`` (else the test's temporary folder).

Without a browser the test is skipped with the reason, unless ``HCM_REQUIRE_BROWSER=1`` (CI, whose
``.ci/run`` installs the packages) makes that a failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hcm_browser import artifacts as artifacts_folder
from hcm_browser import browser_or_skip

from hcm.apps.report import cell, write_report


@pytest.mark.slow
def test_report_renders_in_chromium_without_console_errors(small_runs, tmp_path: Path) -> None:
    page = write_report([small_runs.full, small_runs.no_cdc], tmp_path / "report.html")
    artifacts = artifacts_folder(tmp_path)
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
