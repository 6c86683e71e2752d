"""Writing golden files atomically, never check-then-write (the seeds' P0-5 must be impossible here).

A writer never looks at whether the target exists and never writes into it: it
creates a temporary file of its own in the same directory with
``O_CREAT | O_EXCL`` (a name nobody else can hold), writes and fsyncs it, renames
it over the target with ``os.replace`` (atomic on POSIX within one file system),
then fsyncs the directory so the rename itself survives a crash. Two processes
writing one path at once each rename a complete file; the last rename wins and a
reader sees one whole file or the other, never a mix.
"""

from __future__ import annotations

import os
import secrets

from aos.errors import AosError
from aos.runtime.catalog import CATALOG

_TEMP_TRIES = 16


def _fail(action: str, path: str, exc: OSError) -> AosError:
    return AosError(CATALOG.match(exc).code, f"cannot {action} {path}: {exc.strerror or exc}")


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    target = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_TRIES):
        temp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(temp, flags, 0o666)  # the umask applies, as for any new file
            break
        except FileExistsError:
            continue  # 64 random bits collided: take another name, never reuse one
        except OSError as exc:
            raise _fail("create a file in", directory, exc) from None
    else:
        raise AosError("IO_ERROR", f"cannot create a temporary file in {directory}")
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException as exc:  # also KeyboardInterrupt: no temporary file is left behind
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _fail("write", target, exc) from None
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise _fail("open the directory", directory, exc) from None
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        raise _fail("sync the directory", directory, exc) from None
    finally:
        os.close(dir_fd)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A golden file's bytes; a missing or unreadable file is a one-line error with its code."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise AosError("NOT_FOUND", f"no file {os.fspath(path)!r}") from None
    except OSError as exc:
        raise _fail("read", os.fspath(path), exc) from None
