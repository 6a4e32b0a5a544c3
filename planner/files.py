"""Writing user-visible files: never over an existing file unless asked, and atomically (a crash
or a full disk leaves the old file, or nothing, never half a file)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hardware_db.errors import PlannerError


def check_writable(path: str | Path, force: bool = False) -> Path:
    """The path to write, or a one-line error when it exists (without force) or its folder does not."""
    p = Path(path).expanduser()
    if p.exists() and not force:
        raise PlannerError(f"refusing to overwrite '{p}' (use --force to replace it)")
    if p.exists() and p.is_dir():
        raise PlannerError(f"'{p}' is a folder, not a file")
    if not p.parent.exists():
        raise PlannerError(f"folder '{p.parent}' does not exist")
    return p


@contextlib.contextmanager
def atomic_file(path: str | Path, force: bool = False, mode: str = "wb") -> Iterator[IO[Any]]:
    """A file to fill bit by bit (a streamed sweep appends chunk after chunk): it is a temporary
    file beside `path`, flushed to disk and renamed into place when the block ends; any exception,
    an interrupt included, removes it, so `path` is never left half written."""
    p = check_writable(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:  # a read-only or pseudo file system (/proc), no permission, a full disk
        raise PlannerError(f"cannot write '{p}': {e.strerror or e}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; a user's output file gets the usual mode
        text = "b" not in mode  # text: UTF-8, and newlines as written (csv writes its own)
        with os.fdopen(fd, mode, encoding="utf-8" if text else None, newline="" if text else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise PlannerError(f"cannot write '{p}': {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes, force: bool = False) -> Path:
    """Write to a temporary file beside `path`, flush it to disk, then rename it into place."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, force) as f:
        f.write(raw)
    return Path(path).expanduser()
