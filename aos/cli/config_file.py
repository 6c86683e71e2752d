"""The CLI's config file: an env file of ``AOS_*`` variables that `aos init` writes.

Which file: ``aos --config PATH …``, else ``AOS_CONFIG_FILE``, else ``./aos.env`` when it exists.
Its values fill only the variables the environment does not already set: the environment wins.
The format is the common subset of shell and dotenv: ``KEY=value`` lines, optional ``export``,
optional single or double quotes, ``#`` comments; ``set -a; . ./aos.env`` works in a shell too.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

import click

DEFAULT_NAME = "aos.env"
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


class ConfigFileError(ValueError):
    pass


def parse_env_file(text: str, source: str = "config file") -> dict[str, str]:
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise ConfigFileError(f"{source} line {n}: expected KEY=value")
        key, value = m.group(1), m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:  # an unquoted value ends at a comment
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def render_env_file(values: dict[str, str], header: str) -> str:
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    for key, value in values.items():
        if "'" in value or "\n" in value:
            raise ConfigFileError(f"{key}: a value with a quote or a newline cannot be written")
        lines.append(f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def write_private_file(path: Path, text: str) -> None:
    """Write atomically (temp file + fsync + rename) with mode 0600: the file holds secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def config_path(explicit: str | None, environ: MutableMapping[str, str]) -> Path | None:
    """The file to read: --config, AOS_CONFIG_FILE, or ./aos.env if present."""
    chosen = explicit or environ.get("AOS_CONFIG_FILE")
    if chosen:
        return Path(chosen).expanduser()
    default = Path(DEFAULT_NAME)
    return default if default.is_file() else None


def apply_config_file(path: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Set the file's variables that ``environ`` lacks; return their names."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"no config file {str(path)!r} (`aos init` writes one)") from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    applied = []
    for key, value in parse_env_file(text, str(path)).items():
        if key not in environ:
            environ[key] = value
            applied.append(key)
    return applied


def load_config_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Callback of the root `--config` option: read the file before any command reads its settings."""
    if ctx.resilient_parsing:
        return
    path = config_path(value, os.environ)
    if path is None:
        return
    try:
        applied = apply_config_file(path, os.environ)
    except ConfigFileError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    if applied:
        from aos.config import reset_settings

        reset_settings()
