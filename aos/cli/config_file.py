"""The CLI's config file: an env file of ``AOS_*`` variables that `aos init` writes.

Which file: ``aos --config PATH …``, else ``AOS_CONFIG_FILE``, else ``./aos.env`` when it exists, else
the settings a running `aos dev` wrote (``<AOS_DATA_DIR>/dev.env``), so operator commands reach the dev stack
with nothing to export. Its values fill only the variables the environment does not already set: the
environment wins.
The format and the writing live in ``aos.envfile``.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

import click

from aos.config import reset_settings
from aos.envfile import (  # noqa: F401 — the CLI's config-file API, re-exported
    ConfigFileError,
    dev_state_path,
    parse_env_file,
    render_env_file,
    write_private_file,
)

DEFAULT_NAME = "aos.env"
# ctx.meta key: the variables read from dev.env; `aos dev` itself must not take a previous stack's URLs as its own
DEV_STATE_KEYS = "aos.dev_state_keys"


def config_path(explicit: str | None, environ: MutableMapping[str, str]) -> Path | None:
    """The file to read: --config, AOS_CONFIG_FILE, ./aos.env if present, else a running `aos dev`'s dev.env."""
    chosen = explicit or environ.get("AOS_CONFIG_FILE")
    if chosen:
        return Path(chosen).expanduser()
    for default in (Path(DEFAULT_NAME), dev_state_path(environ)):
        if default.is_file():
            return default
    return None


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
    from_dev = path == dev_state_path(os.environ)
    try:
        applied = apply_config_file(path, os.environ)
    except ConfigFileError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    if from_dev:
        ctx.meta[DEV_STATE_KEYS] = applied
    if applied:
        reset_settings()


def forget_dev_state(ctx: click.Context) -> None:
    """Undo what was read from dev.env: `aos dev` and `aos quickstart` start their own stack, and a file left
    by one that was killed must not point them at servers that are gone."""
    keys = ctx.find_root().meta.pop(DEV_STATE_KEYS, [])
    for key in keys:
        os.environ.pop(key, None)
    if keys:
        reset_settings()
