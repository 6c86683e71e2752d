"""`aos skills list` and `aos errors list|show`: what exists, read from this installation (no API needed)."""

from __future__ import annotations

import click
from rich.text import Text

from aos.cli.base import console, emit_json, json_option, print_table
from aos.errors import AosError


@click.group()
def skills() -> None:
    """The skill registry."""


@skills.command("list")
@click.option("--recommended", is_flag=True, help="Only the skills recommended for new users, best first.")
@json_option
def skills_list(recommended: bool, as_json: bool) -> None:
    """List skills with their versions, side effects and determinism."""
    from aos.skills.registry import default_registry

    reg = default_registry()
    items = reg.recommended() if recommended else sorted(reg.all(), key=lambda s: s.ref)
    if as_json:
        emit_json([s.describe() for s in items])
        return
    # one line per skill: its summary, cut to the room left (`aos skills list --json` has each description)
    headers = ["skill", *(["rank"] if recommended else []), "side effect", "deterministic", "summary"]
    print_table(headers, [[s.ref, *([str(s.recommended)] if recommended else []), str(s.side_effect),
                           "yes" if s.deterministic else "no", Text(s.summary)] for s in items],
                keep=("skill", "rank", "side effect", "deterministic"))


@click.group()
def errors() -> None:
    """The failure catalog: every error code, its category, retryability and recovery."""


def _entry_dict(e: object) -> dict[str, object]:
    return {"code": e.code, "category": str(e.category), "retryable": e.retryable,  # type: ignore[attr-defined]
            "recovery_mode": str(e.recovery), "http_status": e.http_status,  # type: ignore[attr-defined]
            "description": e.description}  # type: ignore[attr-defined]


@errors.command("list")
@click.option("--category", default=None, help="Only codes of this category (e.g. transient, plan, auth).")
@json_option
def errors_list(category: str | None, as_json: bool) -> None:
    """List every catalog code with its category, retryable flag and recovery mode."""
    from aos.runtime.catalog import CATALOG

    entries = [e for e in CATALOG if category is None or str(e.category) == category]
    if as_json:
        emit_json([_entry_dict(e) for e in entries])
        return
    print_table(["code", "category", "retry", "recovery", "HTTP", "what to do"],
                [[e.code, str(e.category), "yes" if e.retryable else "no", str(e.recovery), str(e.http_status),
                  Text(e.description)] for e in entries],
                keep=("code", "category", "retry", "recovery"), wrap=("what to do",), drop=("HTTP", "what to do"))
    if console.width < 110:
        console.print("aos errors show CODE: what one code means and what to do", style="dim", markup=False)


@errors.command("show")
@click.argument("code")
@json_option
def errors_show(code: str, as_json: bool) -> None:
    """Show one catalog code: what it means and how AOS recovers from it."""
    from aos.runtime.catalog import CATALOG

    code = code.upper()
    if code not in CATALOG:
        raise AosError("NOT_FOUND", f"no catalog code {code}; `aos errors list` shows them all")
    e = CATALOG.get(code)
    if as_json:
        emit_json(_entry_dict(e))
        return
    console.print(f"[bold]{e.code}[/bold]  ({e.category}, HTTP {e.http_status})")
    console.print(f"  retryable: {'yes' if e.retryable else 'no'}; recovery: {e.recovery}", markup=False)
    console.print(f"  {e.description}", markup=False, soft_wrap=True)
