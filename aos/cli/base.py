"""What every command shares: one-line errors with a catalog code and a non-zero exit, output helpers,
and the options of the commands that talk to the API through the SDK."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.table import Column, Table

from aos.config import ConfigError
from aos.errors import AosError
from aos.sdk.errors import AosApiError

# soft_wrap: a long line (an id, a command to copy) is never broken at the terminal's width
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def _error_line(code: str, message: str) -> None:
    err_console.print(f"[red]error:[/red] {code}: ", markup=True, end="")
    err_console.print(message, markup=False, soft_wrap=True)


class AosGroup(click.Group):
    """Turns expected failures into `error: CODE: message` on stderr and exit code 1 — never a traceback.

    Local failures (AosError) and API answers (the SDK's AosApiError, including an API that cannot be
    reached) read the same."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AosError as exc:
            _error_line(exc.code, exc.message)
            for p in exc.problems[1:10]:
                err_console.print(f"  {p['path']}: {p['code']}: {p['message']}", markup=False, soft_wrap=True)
            sys.exit(1)
        except AosApiError as exc:
            _error_line(exc.code, exc.detail)
            for p in exc.problems[1:10]:
                err_console.print(f"  {p.get('path')}: {p.get('code')}: {p.get('message')}", markup=False,
                                  soft_wrap=True)
            sys.exit(1)
        except ConfigError as exc:
            _error_line("CONFIG_INVALID", str(exc))
            sys.exit(2)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def load_json_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise AosError("NOT_FOUND", f"no file {path!r}") from None
    except IsADirectoryError:
        raise AosError("NOT_FOUND", f"{path!r} is a directory, not a JSON file") from None
    except json.JSONDecodeError as exc:
        raise AosError("BODY_MALFORMED", f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}: "
                       f"{exc.msg}") from None


def load_json_object(path: str, what: str) -> dict[str, Any]:
    data = load_json_file(path)
    if not isinstance(data, dict):
        raise AosError("VALIDATION_ERROR", f"{path} must hold a JSON object ({what}), not {type(data).__name__}")
    return data


# --- commands that call the API ----------------------------------------------------------------------------

url_option = click.option("--url", envvar="AOS_URL", default="http://127.0.0.1:8000", show_default=True,
                          help="API base URL (env AOS_URL; `aos dev` prints it).")
key_option = click.option("--api-key", envvar="AOS_API_KEY", required=True,
                          help="API key (env AOS_API_KEY; `aos init` or `aos keys create` makes one).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def api_options(fn: F) -> F:
    """--url and --api-key (from AOS_URL / AOS_API_KEY or the config file)."""
    return url_option(key_option(fn))


def api_client(url: str, api_key: str) -> Any:
    """The SDK client every API command uses (closed when the command ends)."""
    from aos.sdk import Client, RetryPolicy

    try:
        # fewer, shorter retries than the SDK's default: a person is waiting at the terminal
        client = Client(url, api_key, retry=RetryPolicy(max_attempts=3, backoff_s=0.25, backoff_max_s=2.0))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(client.close)
    return client


# The API's largest page: a listing asks for no more than it will show.
MAX_PAGE_SIZE = 200


def take(listing: Callable[..., Iterable[Any]], limit: int | None) -> list[Any]:
    """At most ``limit`` items (all without one) of an SDK listing, which is called with a page size."""
    items = listing(page_size=min(limit or MAX_PAGE_SIZE, MAX_PAGE_SIZE))
    return list(items if limit is None else itertools.islice(items, limit))


def table(*columns: str | Column, **kwargs: Any) -> Table:
    """A table for people: light borders, so that ids and codes keep their room on an 80-column terminal."""
    return Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True, **kwargs)


def print_table(headers: list[str], rows: list[list[Any]], *, keep: tuple[str, ...] = ("id",),
                wrap: tuple[str, ...] = ()) -> None:
    """Print rows under headers. Columns named in ``keep`` (ids, codes, statuses: what people copy or scan)
    are never cut; the others give way on a narrow terminal, ``wrap`` ones by wrapping, the rest with "…"."""
    columns = []
    for i, name in enumerate(headers):
        width = max([len(name)] + [len(c.plain if hasattr(c, "plain") else str(c)) for c in (r[i] for r in rows)])
        columns.append(Column(name, no_wrap=name not in wrap, overflow="fold" if name in wrap else "ellipsis",
                              min_width=width if name in keep else None))
    t = table(*columns)
    for r in rows:
        t.add_row(*r)
    console.print(t)


def id_column(name: str = "id") -> Column:
    """A column of UUIDs: never cut, people copy them into the next command."""
    return Column(name, no_wrap=True, min_width=36)


def money(v: float | None) -> str:
    """Dollars with up to 6 decimals: $0, $0.0125, $0.000003."""
    if v is None:
        return "—"
    return "$0" if v == 0 else "$" + f"{v:.6f}".rstrip("0").rstrip(".")


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} ms"


def when(v: Any) -> str:
    """A timestamp for people: seconds precision, no time zone noise for UTC."""
    if v is None:
        return ""
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M:%S") + ("Z" if v.utcoffset() is not None and not v.utcoffset() else "")
    return str(v)
