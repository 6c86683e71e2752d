"""Headless Debian chromium through chromium-driver (Selenium), kept on this machine, and the log of what it asked.

Chromium is sent through a proxy that does not exist (loopback is always direct) and cannot resolve any name,
so a page that reaches for a CDN cannot leave the machine; the browser's own log of every request the page
made (CDP Network events) is what tests check.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from urllib.parse import urlsplit

import pytest


def start_chromium(window: str = "1280,900"):  # noqa: ANN201 — a selenium WebDriver
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromium-driver are not installed: run `make browser` (as root it apt-get "
                    "installs them)")
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager must not phone home (it is not used)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={window}", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps",
                "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                # nothing leaves the machine, whatever the page asks for
                "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver))


def requests_made(drv) -> list[str]:
    """Every URL the page asked for since the last call (the performance log is drained by reading it),
    less those the page's Content-Security-Policy stopped in the browser: those were never sent."""
    urls, blocked = {}, set()
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls[msg["params"]["requestId"]] = msg["params"]["request"]["url"]
        elif msg["method"] == "Network.loadingFailed" and msg["params"].get("blockedReason") == "csp":
            blocked.add(msg["params"]["requestId"])
    return [url for rid, url in urls.items() if rid not in blocked]


def off_machine(urls: list[str]) -> list[str]:
    return [u for u in urls if urlsplit(u).scheme not in ("data", "blob", "about")
            and urlsplit(u).hostname not in ("127.0.0.1", "localhost")]


def wait_for(drv, script: str, want: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        found = drv.execute_script(script)
        if found >= want:
            return found
        time.sleep(0.25)
    return found
