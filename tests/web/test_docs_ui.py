"""The API docs pages in a real browser (Debian's chromium, headless, through chromium-driver): Swagger UI and
ReDoc render the operations of the OpenAPI document, and the pages request nothing off this machine.

tests/support/browser.py keeps chromium on this machine and reads its log of every request the page made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from aos.web.docs_ui import REDOC_URL, SWAGGER_UI_URL
from tests.support.browser import off_machine, requests_made, start_chromium, wait_for


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
    drv = start_chromium()
    yield drv
    drv.quit()


def _operations(client) -> int:
    doc = client.get("/api/v1/openapi.json").get_json()
    return sum(1 for item in doc["paths"].values() for m in item if m in {"get", "post", "put", "patch", "delete"})


def test_swagger_ui_renders_every_operation_from_local_assets(browser, served, client):
    requests_made(browser)
    browser.get(f"{served}/api/v1/docs")
    want = _operations(client)
    found = wait_for(browser, "return document.querySelectorAll('.opblock').length", want)
    urls = requests_made(browser)
    assert not off_machine(urls), f"the page reached off the machine: {off_machine(urls)}"
    assert found == want, f"Swagger UI shows {found} of {want} operations; requests: {urls}"
    assert any(u.startswith(f"{served}{SWAGGER_UI_URL}swagger-ui-bundle.js") for u in urls)
    text = browser.find_element("tag name", "body").text
    assert "/api/v1/runs" in text and "AOS" in text


def test_redoc_renders_every_operation_from_local_assets(browser, served, client):
    requests_made(browser)
    browser.get(f"{served}/api/v1/redoc")
    want = _operations(client)
    found = wait_for(browser, "return document.querySelectorAll('[data-section-id*=\"/paths/\"]').length", want)
    urls = requests_made(browser)
    assert not off_machine(urls), f"the page reached off the machine: {off_machine(urls)}"
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
