"""What every command shares: one-line errors with a catalog code and a non-zero exit, and output helpers."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from aos.config import ConfigError
from aos.errors import AosError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class AosGroup(click.Group):
    """Turns expected failures into `error: CODE: message` on stderr and exit code 1 — never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AosError as exc:
            err_console.print(f"[red]error:[/red] {exc.code}: {exc.message}", markup=True, soft_wrap=True)
            for p in exc.problems[1:10]:
                err_console.print(f"  {p['path']}: {p['code']}: {p['message']}", markup=False, soft_wrap=True)
            sys.exit(1)
        except ConfigError as exc:
            err_console.print(f"[red]error:[/red] CONFIG_INVALID: {exc}", markup=True, soft_wrap=True)
            sys.exit(2)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def load_json_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise AosError("NOT_FOUND", f"no file {path!r}") from None
    except json.JSONDecodeError as exc:
        raise AosError("BODY_MALFORMED", f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}: "
                       f"{exc.msg}") from None
