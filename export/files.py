"""Atomic file writes for everything export leaves in its output directory (profiler.atomic does the writing)."""
from __future__ import annotations

import json
from pathlib import Path

from profiler.atomic import atomic_write_bytes as _atomic_write_bytes

OUT_HINT = "choose a writable --out"


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return _atomic_write_bytes(path, data, OUT_HINT)


def atomic_write_json(path: Path, doc: dict) -> Path:
    return _atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode(), OUT_HINT)
