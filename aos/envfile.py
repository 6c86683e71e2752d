"""Env files of ``AOS_*`` variables: the format `aos init` and `aos dev` write and the CLI reads.

The format is the common subset of shell and dotenv: ``KEY=value`` lines, optional ``export``,
optional single or double quotes, ``#`` comments; ``set -a; . ./aos.env`` works in a shell too.
Files are written atomically with mode 0600: they hold secrets.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aos.config import data_dir_of

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
DEV_STATE_NAME = "dev.env"  # in the data directory, written by `aos dev` while it runs


def dev_state_path(environ: Mapping[str, str]) -> Path:
    """Where `aos dev` writes its settings: dev.env in the data directory."""
    return Path(data_dir_of(environ)) / DEV_STATE_NAME


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
