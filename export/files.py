"""Atomic file writes for everything export leaves in its output directory."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from profiler.errors import FgnasError


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Temp file in the same directory, fsync, rename: a reader never sees half a model."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise FgnasError(f"cannot write {path}: {exc.strerror}; choose a writable --out") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: Path, doc: dict) -> Path:
    return atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())
