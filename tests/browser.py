"""A headless Chromium driven by Selenium, for tests that look at pages (the web app of `tkit serve`,
the run pages).

Use the `browser` fixture (import it into the test module: `from browser import browser`), or
`chromium(profile_dir)` where a fixture does not fit. Both skip, with the reason, only when Chromium,
its ChromeDriver or Selenium is missing; CI installs them (`.ci/run`). Screenshots go to
`test-artifacts/` (git-ignored), see `screenshot`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
WINDOW = (1300, 900)
# Quiet, private, offline: no sandbox (containers), no GPU, no update checks or sync.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")

__all__ = ["ARTIFACTS", "browser", "chromium", "missing", "screenshot", "wait_for"]


def _binaries() -> tuple[str | None, str | None]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    if chrome is None and Path("/usr/bin/chromium").is_file():
        chrome = "/usr/bin/chromium"
    driver = shutil.which("chromedriver")
    if driver is None and Path("/usr/bin/chromedriver").is_file():
        driver = "/usr/bin/chromedriver"
    return chrome, driver


def missing() -> str | None:
    """Why no browser test can run here, or None when Chromium, ChromeDriver and Selenium are all there."""
    chrome, driver = _binaries()
    absent = [name for name, found in (("chromium", chrome), ("chromedriver", driver)) if found is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        absent.append("the selenium package")
    if absent:
        return (f"{' and '.join(absent)} not installed (Debian: apt-get install chromium chromium-driver; "
                "pip install selenium)")
    return None


@contextmanager
def chromium(profile_dir: Path, *, window: tuple[int, int] = WINDOW) -> Iterator[Any]:
    """A Selenium `WebDriver` for a fresh headless Chromium whose profile lives in `profile_dir`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome, driver_path = _binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_window_size(*window)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A configured headless Chromium (Selenium WebDriver), closed after the test."""
    reason = missing()
    if reason:
        pytest.skip(f"no browser test: {reason}")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with chromium(profile) as driver:
        yield driver


def wait_for(driver: Any, condition: Callable[[Any], Any], *, timeout: float = 20, what: str = "the page",
             explain: Callable[[Any], str] | None = None) -> Any:
    """Poll `condition(driver)` until it is truthy and return its value; after `timeout` seconds,
    fail naming `what`, with `explain(driver)` (what the page shows) when given."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        detail = f" ({explain(driver)})" if explain is not None else ""
        pytest.fail(f"timed out after {timeout} s waiting for {what}{detail}")


def screenshot(driver: Any, name: str) -> Path:
    """Save the window as `test-artifacts/<name>` and return the path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path
