"""What every command shares: one-line errors with a catalog code and a non-zero exit, output helpers,
and the options of the commands that talk to the API through the SDK."""

from __future__ import annotations

import importlib
import itertools
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from aos.config import DEFAULT_API_URL, ConfigError
from aos.errors import AosError

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
    reached) read the same. Commands named in ``lazy_commands`` (name -> "module:attribute") are imported
    only when used, so a quick command does not pay for the imports of every other one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, str] = {}
        self.lazy_subcommands: dict[str, list[str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            cmd = _load(self.lazy_commands[cmd_name])
            for sub in self.lazy_subcommands.get(cmd_name, []):
                cmd.add_command(_load(sub))  # type: ignore[attr-defined]
            self.add_command(cmd, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AosError as exc:
            _error_line(exc.code, exc.message)
            for p in exc.problems[1:10]:
                err_console.print(f"  {p['path']}: {p['code']}: {p['message']}", markup=False, soft_wrap=True)
            sys.exit(1)
        except ConfigError as exc:
            _error_line("CONFIG_INVALID", str(exc))
            sys.exit(2)
        except Exception as exc:
            if not _is_api_error(exc):
                raise
            _error_line(exc.code, exc.detail)
            for p in exc.problems[1:10]:
                err_console.print(f"  {p.get('path')}: {p.get('code')}: {p.get('message')}", markup=False,
                                  soft_wrap=True)
            sys.exit(1)


def _is_api_error(exc: Exception) -> bool:
    """An SDK error (AosApiError), without importing the SDK (httpx and all) for commands that never use it:
    if the SDK was not imported, no SDK error can have been raised."""
    sdk_errors = sys.modules.get("aos.sdk.errors")
    return sdk_errors is not None and isinstance(exc, sdk_errors.AosApiError)


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


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


def parse_json_text(text: str | None, what: str) -> Any:
    """A JSON value given on the command line (None: null)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AosError("BODY_MALFORMED", f"{what} is not valid JSON: column {exc.colno}: {exc.msg} "
                       "(quote it for the shell: --data '{\"approved\": true}')") from None


def load_json_object(path: str, what: str) -> dict[str, Any]:
    data = load_json_file(path)
    if not isinstance(data, dict):
        raise AosError("VALIDATION_ERROR", f"{path} must hold a JSON object ({what}), not {type(data).__name__}")
    return data


# --- commands that call the API ----------------------------------------------------------------------------

url_option = click.option("--url", envvar="AOS_URL", default=DEFAULT_API_URL, show_default=True,
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
    """The one table style of the CLI: a rule under the header, no borders, two spaces between columns, so that
    ids and codes keep their room on an 80-column terminal."""
    return Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True, **kwargs)


_GAP = 2          # between two columns of ``table()``
_WHOLE = 20       # a column this narrow (a time, a count, a name) is shown whole or left out, never cut
_MIN_SHRUNK = 8   # a longer one cut shorter than this says nothing: hide it instead
_MIN_WRAPPED = 20  # nor does text wrapped into a column narrower than this


def _cell_width(cell: Any) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text(str(cell)).cell_len


def print_table(headers: list[str], rows: list[list[Any]], *, keep: tuple[str, ...] = ("id",),
                wrap: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> None:
    """Print rows under headers in the one table style.

    Columns named in ``keep`` (ids, codes, statuses: what people copy into the next command or scan for) are
    never cut. The others give way on a narrow terminal: ``wrap`` ones by wrapping, the rest with "…". When
    even that does not fit, the columns named in ``drop`` are left out, in that order, and a last line says
    which (``--json`` has everything)."""
    natural = [max([len(h)] + [_cell_width(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def least(i: int) -> int:
        if headers[i] in keep or natural[i] <= _WHOLE:
            return natural[i]
        return min(natural[i], _MIN_WRAPPED if headers[i] in wrap else _MIN_SHRUNK)

    shown = list(range(len(headers)))
    for name in drop:
        if sum(least(i) for i in shown) + _GAP * (len(shown) - 1) <= console.width:
            break
        shown.remove(headers.index(name))
    # Widths are set here, not left to rich: with collapsed padding rich under-counts the gaps between columns
    # and draws lines wider than the terminal. Kept columns get their full width; the others share the rest,
    # the narrowest first, so a short column is never cut to make room for a long one.
    width = {i: natural[i] for i in shown if headers[i] in keep}
    room = console.width - sum(width.values()) - _GAP * (len(shown) - 1)
    flexible = sorted((i for i in shown if headers[i] not in keep), key=lambda i: natural[i])
    for n, i in enumerate(flexible):
        width[i] = max(1, min(natural[i], room // (len(flexible) - n)))
        room -= width[i]
    columns = [Column(headers[i], no_wrap=headers[i] not in wrap, width=width[i],
                      overflow="fold" if headers[i] in wrap else "ellipsis") for i in shown]
    t = table(*columns)
    for r in rows:
        t.add_row(*(r[i] for i in shown))
    console.print(t)
    hidden = [h for i, h in enumerate(headers) if i not in shown]
    if hidden and rows:
        console.print(f"(not shown at this width: {', '.join(hidden)}; --json has them)", style="dim",
                      markup=False, soft_wrap=False)


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
