"""The documentation tells the truth about what ships: the README lists every page of docs/, and no page (nor
the OpenAPI document) sends a reader to a file that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
# names of the project's own design notes, which live outside this repository
NOT_SHIPPED = re.compile(r"\bSPEC\b|\.\./shared/|ARCHITECTURE\.md|STYLE\.md")


def test_the_readme_lists_every_page():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in PAGES if f"(docs/{p.name})" not in readme]
    assert not missing, f"README's documentation list misses {missing}"


def test_no_page_cites_a_file_that_does_not_ship():
    for page in [ROOT / "README.md", ROOT / "ops" / "README.md", *PAGES]:
        text = page.read_text()
        assert not NOT_SHIPPED.search(text), f"{page.name} cites a design note that does not ship"
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_openapi_document_cites_nothing_that_does_not_ship(client):
    doc = client.get("/api/v1/openapi.json").get_data(as_text=True)
    assert not NOT_SHIPPED.search(doc)


def test_the_singletons_runbook_opens_as_a_page_for_operators():
    first = (ROOT / "docs" / "operations-singletons.md").read_text().split("\n\n")[1]
    assert "Merge into" not in first and "operations.md" in first
