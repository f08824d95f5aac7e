"""Atomic file writes, shared by every module that leaves a file behind (tables, models, run directories, exports).

A temp file in the target's directory, fsync, rename, fsync of the directory: a reader (or a crash) sees the old file
or the new one, never half of it. mkstemp creates its file 0600; the result gets the mode a plain open() would give
(0666 less the umask), so tables and models stay readable by the people they are shared with. Any OS error on the
way (a full disk, a directory where the file should go) is an FgnasError: the temp file is removed and the old file,
if any, is left as it was.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from profiler.errors import FgnasError

DEFAULT_HINT = "choose a writable location"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes, hint: str = DEFAULT_HINT) -> Path:
    """Write `data` to `path` atomically; FgnasError ending in `hint` when it cannot be written."""
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the data was written, with a less clear message
        raise FgnasError(f"cannot write {path}: it is a directory; {hint}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise FgnasError(f"cannot write {path}: {exc.strerror}; {hint}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise FgnasError(f"cannot write {path}: {exc.strerror or exc}; {hint}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, hint: str = DEFAULT_HINT) -> Path:
    """`atomic_write_bytes` of `text` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), hint)
