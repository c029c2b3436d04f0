"""Headless Chromium from Debian's `chromium` and `chromium-driver` packages, driven by Selenium with both paths
given explicitly (Selenium Manager never runs, nothing is downloaded).

Chromium runs with the flags a machine without internet needs (no background networking, updates, sync or
QUIC; a fresh profile). Where the packages are missing the tests skip, except under CI (`CI` set), where a
missing browser is a failure: `make test` installs them (`make system-deps`).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("MDR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = os.environ.get("MDR_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-default-browser-check", "--window-size=1400,1000")
ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts" / "console"


def missing() -> str | None:
    for path, pkg in ((CHROMIUM, "chromium"), (DRIVER, "chromium-driver")):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} not found: apt-get install {pkg} (make system-deps)"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A fresh headless Chromium with its own profile; performance (network) and console logs on."""
    why = missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mdr-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    opts.set_capability("unhandledPromptBehavior", "ignore")  # a dialog stays open, so a test can see it
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except Exception:  # e.g. an element replaced while it was read
            v = None
        if v or time.monotonic() > deadline:
            return v
        time.sleep(every)


def sign_in(driver: Any, base: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert wait_for(lambda: "/queue" in driver.current_url), driver.page_source[:500]


def requested_urls(driver: Any) -> list[str]:
    """Every URL the browser asked for since the last call (from the DevTools network log)."""
    import json

    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            out.append(msg["params"]["request"]["url"])
    return out


def foreign(urls: list[str], base: str) -> list[str]:
    """The network URLs not on the console's own origin (the browser's own chrome:// pages and data: URLs are
    not requests to anyone)."""
    own = urlsplit(base)
    return [u for u in urls if urlsplit(u).scheme not in ("data", "chrome", "about", "chrome-extension")
            and (urlsplit(u).scheme, urlsplit(u).netloc) != (own.scheme, own.netloc)]


def dialog_open(driver: Any) -> str | None:
    """The text of an open alert/confirm/prompt dialog, or None."""
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return str(driver.switch_to.alert.text)
    except NoAlertPresentException:
        return None


def screenshot(driver: Any, name: str) -> Path:
    """A full-page PNG under out/test-artifacts/console/ (kept after the run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000), "scale": 1}})
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
