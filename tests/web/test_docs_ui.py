"""The API docs pages in a real browser (Debian's chromium, headless, through chromium-driver): Swagger UI and
ReDoc render the operations of the OpenAPI document, and the pages request nothing off this machine.

Chromium is sent through a proxy that does not exist (loopback is always direct) and cannot resolve any name,
so a page that reaches for a CDN cannot leave the machine; the browser's own log of every request the page
made (CDP Network events) is what the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from aos.web.docs_ui import REDOC_URL, SWAGGER_UI_URL


@pytest.fixture(scope="module")
def served(app) -> Iterator[str]:
    """The app on a real HTTP server (loopback)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
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
                "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps",
                "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                # nothing leaves the machine, whatever the page asks for
                "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver))
    yield drv
    drv.quit()


def _operations(client) -> int:
    doc = client.get("/api/v1/openapi.json").get_json()
    return sum(1 for item in doc["paths"].values() for m in item if m in {"get", "post", "put", "patch", "delete"})


def _requests(drv) -> list[str]:
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


def _off_machine(urls: list[str]) -> list[str]:
    return [u for u in urls if urlsplit(u).scheme not in ("data", "blob", "about")
            and urlsplit(u).hostname not in ("127.0.0.1", "localhost")]


def _wait_for(drv, script: str, want: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        found = drv.execute_script(script)
        if found >= want:
            return found
        time.sleep(0.25)
    return found


def test_swagger_ui_renders_every_operation_from_local_assets(browser, served, client):
    _requests(browser)
    browser.get(f"{served}/api/v1/docs")
    want = _operations(client)
    found = _wait_for(browser, "return document.querySelectorAll('.opblock').length", want)
    urls = _requests(browser)
    assert not _off_machine(urls), f"the page reached off the machine: {_off_machine(urls)}"
    assert found == want, f"Swagger UI shows {found} of {want} operations; requests: {urls}"
    assert any(u.startswith(f"{served}{SWAGGER_UI_URL}swagger-ui-bundle.js") for u in urls)
    text = browser.find_element("tag name", "body").text
    assert "/api/v1/runs" in text and "AOS" in text


def test_redoc_renders_every_operation_from_local_assets(browser, served, client):
    _requests(browser)
    browser.get(f"{served}/api/v1/redoc")
    want = _operations(client)
    found = _wait_for(browser, "return document.querySelectorAll('[data-section-id*=\"/paths/\"]').length", want)
    urls = _requests(browser)
    assert not _off_machine(urls), f"the page reached off the machine: {_off_machine(urls)}"
    assert found == want, f"ReDoc shows {found} of {want} operations; requests: {urls}"
    assert f"{served}{REDOC_URL}" in urls
    text = browser.find_element("tag name", "body").text
    assert "/api/v1/runs" in text or "runs" in text.lower()


def test_the_pages_may_load_only_from_this_server(client):
    for page in ("/api/v1/docs", "/api/v1/redoc"):
        res = client.get(page)
        assert res.status_code == 200
        csp = res.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
        assert "cdn." not in res.get_data(as_text=True)


def test_the_assets_are_served_with_a_cache_lifetime(client):
    res = client.get(f"{SWAGGER_UI_URL}swagger-ui-bundle.js")
    assert res.status_code == 200 and "javascript" in res.content_type
    assert "max-age=86400" in res.headers["Cache-Control"]
    assert client.get(REDOC_URL).status_code == 200
    assert client.get(f"{SWAGGER_UI_URL}../../../../etc/passwd").status_code == 404
