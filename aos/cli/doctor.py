"""`aos doctor`: is this deployment able to keep its promises? Each problem comes with its fix."""

from __future__ import annotations

import sys

import click

from aos.cli.base import console, emit_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """Check migrations, database and broker reachability, the Redis eviction policy and persistence,
    the visibility timeout against the longest countdown and step, pgvector and the beat leader.

    Exits 1 when any check fails; every failed check says how to fix it."""
    from aos.services.doctor import healthy, run_checks

    findings = run_checks()
    ok = healthy(findings)
    if as_json:
        emit_json({"ok": ok, "findings": [f.as_dict() for f in findings]})
    else:
        for f in findings:
            mark = "[green]ok  [/green]" if f.ok else "[red]FAIL[/red]"
            if f.ok and f.level == "info" and f.fix:
                mark = "[yellow]note[/yellow]"
            console.print(f"{mark} {f.check}: ", end="", markup=True)
            console.print(f.detail, markup=False, soft_wrap=True)
            if f.fix and (not f.ok or f.level == "info"):
                console.print(f"       fix: {f.fix}", markup=False, soft_wrap=True)
        failed = sum(not f.ok for f in findings)
        console.print("all checks passed" if ok else f"{failed} check(s) failed")
    sys.exit(0 if ok else 1)
