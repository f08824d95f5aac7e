"""The raw measurement log: JSON Lines beside the table, one record per measurement, never rewritten.

Each record is appended, flushed and fsynced before the next measurement starts, so `kill -9` loses at most the
measurement in flight. A kill in the middle of a write leaves a torn last line: readers drop it, and opening the log
for appending cuts it off first, so the next record never lands glued to a fragment.

A record (`v` 1): `{"v": 1, "kind": "conv" | "op" | "net" | "reference", "id": <probe config hash>, "spec":
ConvSpec.to_dict() | OpProbe.to_dict() | NetProbe.to_dict(), "m": Measurement.to_dict(), "device": <device name>,
"serial": <str|null>, "hardware": <phone model or host CPU model|null>, "settings": {"threads", "runs", "warmup",
"use_xnnpack"}, "t": <unix s when logged>, "attempts": <measurements taken by the stability guard>}`, plus for
ops `"unit"` and `"units"` (profiler.ops.op_units) and for networks `"ops"` (the ops of its model,
profiler.model_ops). "reference" records re-measure one fixed conv to detect drift (sweep.drift_summary).

Every record names its device and settings, so that a resumed sweep can refuse to mix another phone's (or other
`--runs`') measurements into the table (check_resume). Logs written before `hardware` and `settings` existed are
checked on what their records carry (device name and serial); fgnas-profile also compares the settings of the table
beside such a log. While a sweep appends, it holds an exclusive flock on the log: a second sweep on the same log
stops at once instead of timing on the same core and interleaving records. The kernel drops the lock when the
process ends, however it ends.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path

from profiler.errors import FgnasError

RECORD_VERSION = 1
RECORD_KINDS = ("conv", "op", "net", "reference")
_REQUIRED = ("v", "kind", "id", "spec", "m", "device")
RAW_LOG_SUFFIX = ".raw.jsonl"
RESUME_ADVICE = "resume with the same settings, or a new --out"


def raw_log_path(table_path: Path) -> Path:
    """`device_tables/host-amd-f26m2s1.json` -> `device_tables/host.raw.jsonl`."""
    table_path = Path(table_path)
    return table_path.with_name(f"{table_path.stem}{RAW_LOG_SUFFIX}")


class RawLog:
    """Append-only writer; safe to share between the threads of a device farm."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.created = not self.path.exists()  # so a caller that fails before measuring can remove an empty new log
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # one write() per record, nothing left in a buffer; open for the writer's life (closed by close())
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise FgnasError(f"cannot write the raw log {self.path}: {exc.strerror}; choose a writable --out") from exc
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise FgnasError(f"another sweep is writing {self.path} (it holds the log's lock): wait for it to finish, "
                             f"or use a new --out") from None
        except OSError as exc:
            self._file.close()
            raise FgnasError(f"cannot lock the raw log {self.path}: {exc.strerror}; choose a local --out") from exc
        try:
            _cut_torn_tail(self.path)  # only under the lock: another writer's record in flight is not torn
        except OSError as exc:
            self._file.close()
            raise FgnasError(f"cannot write the raw log {self.path}: {exc.strerror}; choose a writable --out") from exc
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            try:
                written = 0
                while written < len(line):
                    written += self._file.write(line[written:])
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise FgnasError(f"cannot append to the raw log {self.path}: {exc.strerror}; free space or fix "
                                 f"permissions, then re-run the same command to resume") from exc

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RawLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_records(path: Path) -> list[dict]:
    """All complete records of a raw log ([] when it does not exist); a torn last line is dropped (a last line that
    is a whole record but lacks its newline is kept: the kill came between the record and its newline).

    A line that does not parse anywhere but at the end means the file was damaged by something other than a kill:
    that is an FgnasError naming the file and line, never a silent skip.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    # Everything after the last newline is the line in flight when the writer died (or b"" when none was).
    complete, tail = lines[:-1], lines[-1]
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        records.append(_parse(path, number, line))
    if tail.strip():
        # torn by a kill mid-write: the measurement in flight is the only one lost
        with contextlib.suppress(FgnasError):
            records.append(_parse(path, len(complete) + 1, tail))
    return records


def _parse(path: Path, number: int, line: bytes) -> dict:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FgnasError(f"{path}:{number}: corrupted raw-log line; delete that line (it is one lost measurement) "
                         f"and re-run the same command to measure it again") from None
    if not isinstance(record, dict) or any(k not in record for k in _REQUIRED):
        raise FgnasError(f"{path}:{number}: not a raw-log record (needs {', '.join(_REQUIRED)}); "
                         f"delete that line and re-run the same command")
    if record["v"] != RECORD_VERSION:
        raise FgnasError(f"{path}:{number}: raw-log record version {record['v']} is not {RECORD_VERSION}; "
                         f"use the fgnas version that wrote it, or start a new log with another --out")
    return record


def _cut_torn_tail(path: Path) -> None:
    """Truncate a partial last line left by a kill, so appending continues on a line boundary; a last line that is
    a whole record (only its newline missing) gets its newline instead, so its measurement is kept."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        if _whole_record_at_end(f, size):
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return
        # Walk back to the last newline in chunks; the torn line is at most one record long.
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            chunk = f.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                break
            end = start
        else:
            f.truncate(0)
        f.flush()
        os.fsync(f.fileno())


def _whole_record_at_end(f, size: int) -> bool:
    """Whether the bytes after the last newline of the open file `f` (of `size` bytes) parse as a record."""
    start = max(0, size - (1 << 20))  # far longer than any record; a longer tail is no record of ours
    f.seek(start)
    tail = f.read(size - start).rsplit(b"\n", 1)[-1]
    try:
        _parse(Path(f.name), 0, tail)
    except FgnasError:
        return False
    f.seek(size)
    return True


def _identity_text(identity: tuple) -> str:
    name, serial, hardware = identity
    return " ".join(x for x in (name, f"serial {serial}" if serial else "", f"({hardware})" if hardware else "") if x)


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{k}={settings[k]}" for k in sorted(settings))


def check_resume(records: list[dict], path: Path, devices: list[dict], settings: dict) -> None:
    """FgnasError (RESUME_ADVICE) unless the log's measurements were taken on these devices with these settings.

    `devices`: {"device", "serial", "hardware"} of each device about to measure; `settings`: the measurement
    settings (threads, runs, warmup, use_xnnpack). Each of them must already appear in a non-empty log: the log of
    one phone is never continued on another one (a farm may go on with fewer of its phones). A record without
    `hardware` or `settings` (older logs) is compared on what it has.
    """
    if not records:
        return
    logged = {(r["device"], r.get("serial"), r.get("hardware")) for r in records}
    for device in devices:
        current = (device["device"], device.get("serial"), device.get("hardware"))
        if not any(name == current[0] and serial == current[1] and hardware in (None, current[2])
                   for name, serial, hardware in logged):
            seen = "; ".join(sorted(_identity_text(i) for i in logged))
            raise FgnasError(f"{path} holds measurements of {seen}, not of {_identity_text(current)}: "
                             f"{RESUME_ADVICE}")
    for r in records:
        if "settings" in r and r["settings"] != settings:
            raise FgnasError(f"{path} holds measurements taken with {_settings_text(r['settings'])}, this sweep "
                             f"would use {_settings_text(settings)}: {RESUME_ADVICE}")
