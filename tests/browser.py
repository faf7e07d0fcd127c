"""Headless Chromium for the console's tests: the system's chromium and chromedriver (Debian's
``chromium`` and ``chromium-driver``, which .ci/run installs), driven by Selenium.

Every wait is explicit and bounded (``WAIT_SECONDS``); tests skip with the reason when no
browser is found.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

WAIT_SECONDS = 20.0
ARTEFACTS = Path(__file__).resolve().parent / "artefacts" / "console"
DESKTOP = (1280, 900)
MAX_SHOT_HEIGHT = 2400


def _found() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def chromium() -> Iterator[Any]:
    """A headless Chromium session, quit afterwards; skips the test without one."""
    found = _found()
    if found is None:
        pytest.skip(
            "no chromium and chromedriver on PATH: apt-get install chromium chromium-driver"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver path is given, so Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    driver.set_script_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """``condition(driver)`` once it is truthy, or fail naming ``what`` after WAIT_SECONDS."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.05).until(
        condition, message=f"waited {WAIT_SECONDS:.0f} s for {what}"
    )


def screenshot(driver: Any, name: str) -> Path:
    """Save the whole page (up to ``MAX_SHOT_HEIGHT``) as ``tests/artefacts/console/<name>.png``
    (ignored by git), the window made as tall as the page for the shot."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], min(MAX_SHOT_HEIGHT, max(size["height"], height + 120)))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(size["width"], size["height"])
    return path


def page_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call (a CSP or Trusted Types refusal, a
    script error); the console's own 4xx answers, shown to the user, are expected."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        and "the server responded with a status of 4" not in entry["message"]
    ]
