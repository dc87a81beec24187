"""Writing files so that a full disk (or any write error) leaves no half-written file behind and
says which path and why.

A state file, a descriptor, a stack file or a report is either its whole new content or what it
was before: the text goes to a temporary file in the same directory, is flushed to disk, and is
renamed over the target (rename within one filesystem is atomic, POSIX rename(2)). On failure the
temporary file is removed and the error names the path and the cause ("No space left on
device"), as an EnvironmentProblem (exit 3): the environment, not the user's input, is at fault.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from koinonia_infra.errors import EnvironmentProblem, UsageError


def describe_os_error(exc: OSError, path: Path | str | None = None) -> str:
    """One line: the path and the system's reason, plus the free space when the disk is full."""
    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc)
    text = f"{where}: {reason}" if where is not None else reason
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and where is not None:
        free = free_bytes(Path(where).parent)
        if free is not None:
            text += f" ({_size(free)} free on its filesystem)"
    return text


def free_bytes(directory: Path) -> int | None:
    """Bytes an unprivileged process may still write under `directory` (None if unknown)."""
    for candidate in (directory, *directory.parents):
        try:
            vfs = os.statvfs(candidate)
        except OSError:
            continue
        return vfs.f_bavail * vfs.f_frsize
    return None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def write_atomic(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` all at once, or leave it as it was; EnvironmentProblem naming
    the path and the cause on failure, with no temporary file left.

    A target that exists and is not a regular file (a FIFO, /dev/stdout, /dev/full) cannot be
    replaced by a rename: it is written directly, and its error is reported the same way.
    `mode`: the new file's permissions; by default an existing file keeps its own (0644 else)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        existing = path.stat()
    except OSError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        try:
            with path.open("wb") as fh:
                fh.write(raw)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write {describe_os_error(exc, path)}") from None
        return
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            keep = stat.S_IMODE(existing.st_mode) if existing is not None else 0o644
            os.fchmod(fh.fileno(), keep if mode is None else mode)
            fh.write(raw)
            fh.flush()
            # A full disk can surface only here (delayed allocation): before the rename.
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {describe_os_error(exc, path)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_report(path: Path, text: str, *, option: str = "--report") -> None:
    """A report the user asked for: the whole report or no file at all (exit 3 otherwise)."""
    try:
        write_atomic(path, text)
    except EnvironmentProblem as exc:
        raise EnvironmentProblem(
            f"{option} {exc.message.removeprefix('cannot write ')}; the report was not written"
        ) from None


def check_report_path(path: Path | None, *, option: str = "--report") -> None:
    """Fail before an operation runs, not after, when its report could not go there at all."""
    if path is not None and (path.is_dir() or not path.parent.is_dir()):
        raise UsageError(f"{option} {path}: not a file in an existing directory")
