"""Headless Chromium for the browser tests (Debian's ``chromium`` and ``chromium-driver`` with selenium).

:func:`browser_or_skip` starts one, or skips the test saying what is missing, unless
``HCM_REQUIRE_BROWSER=1`` (CI, whose ``.ci/run`` installs the packages) makes that a failure.
:func:`artifacts` is where screenshots go: ``$HCM_TEST_ARTIFACTS``, else the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL = "apt-get install chromium chromium-driver (Debian) and pip install selenium"


def browser_or_skip(size: str = "1200,900"):
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
                 f"--window-size={size}", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except WebDriverException as error:
        missing(f"Chromium did not start ({error.msg})")


def artifacts(tmp_path: Path) -> Path:
    """The folder for screenshots: ``$HCM_TEST_ARTIFACTS`` (CI keeps it), else ``tmp_path``."""
    folder = Path(os.environ.get("HCM_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
