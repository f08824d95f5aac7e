"""Errors that the CLIs turn into one line and an exit code (DEVELOPERS.md: 2 for bad input, 3 for a device fault)."""
from __future__ import annotations


class FgnasError(Exception):
    """A problem the user can fix: bad input, a missing file, an unreachable target. Exit code 2."""

    exit_code = 2


class DeviceFault(FgnasError):
    """The device failed after retries (unplugged phone, runtime crash). Exit code 3."""

    exit_code = 3
