"""Hostile but realistic input to fgnas-profile, fgnas-table and fgnas-check, and to the files they read (issue 14).

Every case runs one CLI's main(argv) in a fresh folder and asserts its exit code, exactly one line on stderr naming
the problem, no traceback, and that no file in the folder changed and none appeared (unless the case allows one).
Nothing here measures: each refusal comes before a sweep or a check would start timing.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import synthetic_table as syn
from helpers import console, refuses_in_one_line, set_at, snapshot, synthetic_table_file
from profiler.errors import FgnasError
from profiler.gate import cli_check
from profiler.latency import cli_table
from profiler.latency.table import LatencyTable, content_hash
from profiler.measure import cli_profile
from profiler.measure.devices import create_device
from profiler.measure.devices.base import BenchmarkSettings, Measurement
from profiler.measure.rawlog import RawLog, check_resume, read_records
from profiler.measure.reference_model import REFERENCE_SPEC
from profiler.measure.sweep import (
    PASSES,
    device_identity,
    make_record,
    measurement_settings,
    measurements_of,
    probe_kind,
)

REPO = Path(__file__).resolve().parents[1]
MAINS: dict[str, Callable[[list[str]], int]] = {"profile": cli_profile.main, "table": cli_table.main,
                                                "check": cli_check.main}
# A tiny quick space without networks or ops: its records can be made up without a model or a runtime.
TINY = ["--device", "host", "--space", "quick", "--resolutions", "4", "--kernels", "1", "--strides", "1",
        "--samples-per-condition", "3", "--small-samples", "0", "--ops", "none", "--networks", "0", "--warmup", "2",
        "--runs", "3", "--pass-gap", "0", "--out", "t.json", "--cache-dir", "cache"]
SETTINGS = BenchmarkSettings(runs=3, warmup=2)
LUT_ENTRY = "Conv-input:224x224x3-output:112x112x32"


# ---- files the cases start from ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host_identity() -> dict:
    with create_device("host") as host:
        return device_identity(host)


def _finished_log(ws: Path, identity: dict, settings: BenchmarkSettings = SETTINGS, drop: tuple = ()) -> list[dict]:
    """The raw log of the whole TINY sweep, measured (made up) on `identity` with `settings`; record keys in `drop`
    removed (an older log's records)."""
    args = cli_profile.build_parser().parse_args(TINY)
    records = []
    with create_device("host") as host:
        for probe in cli_profile.make_space(args).probes(args.seed):
            ms = syn.true_ms(probe)
            m = Measurement(ms, ms, 0.0, ms, 3, 2, 0.0, 1.0)
            for _ in range(measurements_of(probe, PASSES)):
                record = make_record(probe_kind(probe), probe, m, host, 1, None, settings, identity)
                records.append({k: v for k, v in record.items() if k not in drop})
    syn.write_raw_log(ws / "t.raw.jsonl", records)
    return records


def _other_phone_log(ws: Path) -> None:
    _finished_log(ws, {"device": "pixel1", "serial": "FA6A10301234", "hardware": "Pixel"})


def _table(ws: Path, name: str = "t") -> Path:
    return synthetic_table_file(ws / f"{name}.json")


def _edited_table(edit: Callable[[dict], None], rehash: bool = True) -> Callable[[Path], None]:
    """A setup: the synthetic table, edited (and its content_hash made to match, as a careful forger would)."""
    def setup(ws: Path) -> None:
        path = _table(ws)
        doc = json.loads(path.read_text())
        edit(doc)
        if rehash:
            doc["content_hash"] = content_hash(doc)
        path.write_text(json.dumps(doc))  # json.dumps writes NaN and Infinity as JavaScript does
    return setup


def _lut(text: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / "lut.yaml").write_text(text)
    return setup


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_bytes(data)
    return setup


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for s in setups:
            s(ws)
    return setup


def _mkdir(name: str) -> Callable[[Path], None]:
    return lambda ws: (ws / name).mkdir()


# ---- the cases -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    cli: str
    argv: list[str]
    code: int
    message: str
    setup: Callable[[Path], None] = lambda ws: None
    created: tuple[str, ...] = ()  # files the run may add (an error report)
    changed: tuple[str, ...] = ()  # files the run may change


MODEL = ["model.tflite", "--device", "host", "--budget", "5ms"]
CASES = [
    # fgnas-profile: the raw log is never continued with other devices or settings, nor overwritten
    Case("profile-resume-other-phone", "profile", TINY, 2,
         "holds measurements of pixel1 serial FA6A10301234 (Pixel), not of host", _other_phone_log),
    Case("profile-resume-other-settings", "profile", [*TINY, "--runs", "5"], 2,
         "runs=3, threads=1, use_xnnpack=True, warmup=2, this sweep would use runs=5", None),
    Case("profile-resume-other-threads", "profile", [*TINY, "--threads", "2"], 2,
         "resume with the same settings, or a new --out", None),
    Case("profile-resume-other-warmup", "profile", [*TINY, "--warmup", "0"], 2,
         "resume with the same settings, or a new --out", None),
    Case("profile-resume-old-log-other-runs", "profile", [*TINY, "--runs", "7"], 2,
         "was measured with runs=3 (now 7) (the settings of t.json)", None),
    Case("profile-out-is-the-raw-log", "profile", [*TINY, "--out", "t.raw.jsonl"], 2,
         "names a raw log, not a table", None),
    Case("profile-out-ends-in-raw-log-name", "profile", [*TINY, "--out", "sub/host.raw.jsonl"], 2,
         "names a raw log, not a table", _write("sub/host.raw.jsonl", b"")),
    Case("profile-out-is-a-directory", "profile", [*TINY, "--out", "tables"], 2, "is a directory", _mkdir("tables")),
    Case("profile-out-is-not-a-table", "profile", [*TINY, "--out", "notes.json"], 2,
         "exists and is not a latency table", _write("notes.json", b"my notes, not a table\n")),
    Case("profile-raw-log-is-a-directory", "profile", TINY, 2, "would be a directory", _mkdir("t.raw.jsonl")),
    Case("profile-pass-gap-inf", "profile", [*TINY, "--pass-gap", "inf"], 2, "--pass-gap must be a finite"),
    Case("profile-pass-gap-nan", "profile", [*TINY, "--pass-gap", "nan"], 2, "--pass-gap must be a finite"),
    Case("profile-pass-gap-negative", "profile", [*TINY, "--pass-gap", "-1"], 2, "--pass-gap must be a finite"),
    Case("profile-passes-zero", "profile", [*TINY, "--passes", "0"], 2, "--passes must be at least 1"),
    Case("profile-samples-zero", "profile", [*TINY, "--samples-per-condition", "0"], 2,
         "samples per condition must be at least 1"),
    Case("profile-networks-negative", "profile", [*TINY, "--networks", "-1"], 2, "count >= 0), got"),
    Case("profile-runs-zero", "profile", [*TINY, "--runs", "0"], 2, "--runs and --threads must be at least 1"),
    Case("profile-log-line-not-utf8", "profile", TINY, 2, "t.raw.jsonl:1: corrupted raw-log line",
         _write("t.raw.jsonl", b'{"v": 1, "kind": "conv", "id": "\xff\xfe"}\n{}\n')),
    Case("profile-log-newer-record-version", "profile", TINY, 2, "raw-log record version 2 is not 1",
         _write("t.raw.jsonl", json.dumps({"v": 2, "kind": "conv", "id": "x", "spec": {}, "m": {},
                                           "device": "host"}).encode() + b"\n")),
    # fgnas-table: tables and lookup tables with numbers no fit makes
    Case("table-nan-intercept", "table", ["show", "t.json"], 2, "non-finite number at conditions/0/b_ms",
         _edited_table(set_at(["conditions", 0, "b_ms"], float("nan")), rehash=False)),
    Case("table-infinite-invoke-overhead", "table", ["predict", "t.json", "--conv", "16x16x64:64:k3:s1:relu"], 2,
         "non-finite number at invoke_overhead_ms", _edited_table(set_at(["invoke_overhead_ms"], float("inf")), False)),
    Case("table-negative-intercept", "table", ["show", "t.json"], 2, "negative coefficient at conditions/0/b_ms",
         _edited_table(set_at(["conditions", 0, "b_ms"], -0.5))),
    Case("table-negative-affine-slope", "table", ["predict", "t.json", "--conv", "16x16x64:64:k3:s1:relu"], 2,
         "negative coefficient at conditions/0/affine/a_ms_per_mflop",
         _edited_table(set_at(["conditions", 0, "affine", "a_ms_per_mflop"], -1.0))),
    Case("table-negative-op-slope", "table", ["show", "t.json"], 2, "negative coefficient at ops/ADD/a_ms_per_unit",
         _edited_table(set_at(["ops", "ADD", "a_ms_per_unit"], -1e-5))),
    Case("table-negative-invoke-overhead", "table", ["diff", "t.json", "t.json"], 2,
         "negative coefficient at invoke_overhead_ms", _edited_table(set_at(["invoke_overhead_ms"], -0.01))),
    Case("table-not-utf8", "table", ["show", "t.json"], 2, "not UTF-8 text", _write("t.json", b"{\"a\": \"\xff\"}")),
    Case("table-plot-raw-log-outside-folder", "table", ["plot", "t.json", "--out", "plots"], 2,
         "points outside the table's folder", _both(_write("../elsewhere/secret.raw.jsonl", b""), _edited_table(
             set_at(["raw_log", "path"], "../elsewhere/secret.raw.jsonl")))),
    Case("table-plot-absolute-raw-log", "table", ["plot", "t.json", "--out", "plots"], 2,
         "points outside the table's folder", _edited_table(set_at(["raw_log", "path"], "/etc/passwd"))),
    Case("table-plot-imported-table", "table", ["plot", "t.json", "--out", "plots"], 2,
         "is an imported table", _edited_table(set_at(["source"], {"kind": "imported", "format": "proxylessnas"}))),
    Case("import-over-a-measured-table", "table",
         ["import", "--format", "proxylessnas", "lut.yaml", "--device", "t", "--out", "t.json"], 2,
         "t.json already exists: pass --force",
         _both(_table, _lut(f"{LUT_ENTRY}: {{count: 3, mean: 1.5, var: 0.01}}\n"))),
    Case("import-out-is-a-raw-log", "table",
         ["import", "--format", "proxylessnas", "lut.yaml", "--device", "t", "--out", "t.raw.jsonl", "--force"], 2,
         "is a raw log name", _both(_table, _lut(f"{LUT_ENTRY}: {{count: 3, mean: 1.5, var: 0.01}}\n"))),
    Case("import-lut-nan-mean", "table", ["import", "--format", "proxylessnas", "lut.yaml", "--device", "x"], 2,
         "mean nan is not a positive finite latency", _lut(f"{LUT_ENTRY}: {{count: 3, mean: .nan, var: 0.01}}\n")),
    Case("import-lut-negative-mean", "table", ["import", "--format", "ofa", "lut.yaml", "--device", "x"], 2,
         "mean -1.5 is not a positive finite latency", _lut(f"{LUT_ENTRY}: {{count: 3, mean: -1.5, std: 0.1}}\n")),
    Case("import-lut-infinite-var", "table", ["import", "--format", "proxylessnas", "lut.yaml", "--device", "x"], 2,
         "is not a finite non-negative spread", _lut(f"{LUT_ENTRY}: {{count: 3, mean: 1.5, var: .inf}}\n")),
    Case("import-lut-zero-count", "table", ["import", "--format", "proxylessnas", "lut.yaml", "--device", "x"], 2,
         "count 0 is below 1", _lut(f"{LUT_ENTRY}: {{count: 0, mean: 1.5, var: 0.01}}\n")),
    Case("import-lut-not-utf8", "table", ["import", "--format", "proxylessnas", "lut.yaml", "--device", "x"], 2,
         "not UTF-8 text", _write("lut.yaml", b"Conv: {count: 3, mean: \xff}\n")),
    # fgnas-check: bad input exits 2 (never 1, which CI reads as a regression) before measuring
    Case("check-garbage-model", "check", MODEL, 2, "model.tflite is not a TFLite model",
         _write("model.tflite", os.urandom(256))),
    Case("check-onnx-model", "check", MODEL, 2, "is not a TFLite model",
         _write("model.tflite", b"\x08\x07\x12\x07pytorch\x1a\x052.1.0:\x9a\x01\n" + b"\0" * 64)),
    Case("check-budget-overflows", "check", ["model.tflite", "--device", "host", "--budget", "1e309ms"], 2,
         "--budget must be positive and finite", _write("model.tflite", b"")),
    Case("check-junit-is-a-directory", "check", [*MODEL, "--junit", "reports"], 2, "--junit reports is a directory",
         _mkdir("reports")),
    Case("check-json-is-a-directory", "check", [*MODEL, "--json", "reports"], 2, "--json reports is a directory",
         _mkdir("reports")),
    Case("check-confidence-nan", "check", [*MODEL, "--confidence", "nan"], 2, "--confidence must be between 0 and 1"),
    Case("check-baseline-nan-latency", "check", ["model.tflite", "--device", "host", "--baseline", "b.json"], 2,
         "needs at least 2 pairs of positive latencies", _both(
             _write("model.tflite", b"\0\0\0\0TFL3" + b"\0" * 64), _write("b.json", json.dumps({
                 "format": "fgnas-check-baseline", "format_version": 1, "created_at": 0.0,
                 "model": {"name": "m", "sha256": "0"}, "reference": {"spec": REFERENCE_SPEC.to_dict(), "sha256": "0"},
                 "device": {}, "settings": {}, "ratio": {},
                 "pairs": [{"model_ms": float("nan"), "reference_ms": 1.0}] * 3}).encode()))),
    Case("check-missing-model-writes-the-error-report", "check", [*MODEL, "--json", "r.json"], 2,
         "model.tflite does not exist", created=("r.json",)),
]


def _old_log_and_table(ws: Path, identity: dict) -> None:
    """A log from before records carried their settings, and the table its sweep wrote (runs=3)."""
    records = _finished_log(ws, identity, drop=("settings", "hardware"))
    doc = LatencyTable.build(records, {"name": "host"}, {**SETTINGS.to_dict(), "space": "quick"},
                             ws / "t.raw.jsonl").save(ws / "t.json")
    assert doc.exists()


_NEEDS_IDENTITY = {"profile-resume-other-settings": lambda ws, ident: _finished_log(ws, ident),
                   "profile-resume-other-threads": lambda ws, ident: _finished_log(ws, ident),
                   "profile-resume-other-warmup": lambda ws, ident: _finished_log(ws, ident),
                   "profile-resume-old-log-other-runs": _old_log_and_table,
                   "profile-out-is-the-raw-log": lambda ws, ident: _finished_log(ws, ident)}


def _run(case: Case, ws: Path, capsys) -> str:
    return refuses_in_one_line(MAINS[case.cli], case.argv, ws, capsys, case.code, case.message, case.created,
                               case.changed)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_line_and_its_exit_code_and_changes_no_file(case, tmp_path, capsys, host_identity):
    ws = tmp_path / "ws"
    ws.mkdir()
    if case.id in _NEEDS_IDENTITY:
        _NEEDS_IDENTITY[case.id](ws, host_identity)
    else:
        case.setup(ws)
    _run(case, ws, capsys)


def test_there_are_enough_cases():
    assert len(CASES) >= 35 and len({c.id for c in CASES}) == len(CASES)


# ---- resume, lock and disk: cases that need more than a file ------------------------------------------------------

def test_a_second_sweep_on_a_locked_log_stops_at_once_and_changes_nothing(tmp_path, capsys, host_identity):
    ws = tmp_path / "ws"
    ws.mkdir()
    _finished_log(ws, host_identity)
    with RawLog(ws / "t.raw.jsonl"):  # the first sweep, still running
        _run(Case("locked", "profile", TINY, 2, "another sweep is writing"), ws, capsys)


def test_a_resume_with_the_same_device_and_settings_goes_on(tmp_path, capsys, host_identity, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    records = _finished_log(ws, host_identity)
    log = (ws / "t.raw.jsonl").read_bytes()
    with monkeypatch.context() as m:
        m.chdir(ws)
        assert cli_profile.main(TINY) == 0
    assert "measured 0, skipped" in capsys.readouterr().out
    assert (ws / "t.raw.jsonl").read_bytes() == log and len(read_records(ws / "t.raw.jsonl")) == len(records)
    assert LatencyTable.load(ws / "t.json").raw_log_file == (ws / "t.raw.jsonl").resolve()


def test_a_full_disk_while_writing_the_table_keeps_the_old_table_and_the_log(tmp_path, capsys, host_identity,
                                                                             monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    _finished_log(ws, host_identity)
    with monkeypatch.context() as m:
        m.chdir(ws)
        assert cli_profile.main(TINY) == 0
    capsys.readouterr()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("profiler.atomic.os.fsync", full)
    _run(Case("disk-full", "profile", TINY, 2, "No space left on device"), ws, capsys)
    assert not [p for p in ws.iterdir() if p.name.endswith(".tmp")]


def test_an_empty_log_created_by_a_failing_run_is_removed(tmp_path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    _run(Case("unknown-device", "profile", [*TINY, "--device", "toaster"], 2, "unknown device 'toaster'"), ws, capsys)
    assert not (ws / "t.raw.jsonl").exists()


def test_two_concurrent_sweeps_the_second_exits_2_and_the_lock_dies_with_the_first(tmp_path, host_identity):
    ws = tmp_path / "ws"
    ws.mkdir()
    _finished_log(ws, host_identity)
    log = (ws / "t.raw.jsonl").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from profiler.measure.rawlog import RawLog; "
                               "log = RawLog(sys.argv[1]); print('locked', flush=True); time.sleep(600)",
                               str(ws / "t.raw.jsonl")], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = console("fgnas-profile", *TINY, cwd=ws)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert second.stderr.strip().splitlines() == [second.stderr.strip()]
        assert "another sweep is writing" in second.stderr
        assert (ws / "t.raw.jsonl").read_bytes() == log
    finally:
        holder.send_signal(signal.SIGKILL)  # as kill -9 would
        holder.wait()
    with open(ws / "t.raw.jsonl", "rb") as f:  # the kernel dropped the dead sweep's lock
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.parametrize("script, args, message", [
    ("fgnas-check", ["model.tflite", "--device", "host", "--budget", "5ms", "--junit", "reports"],
     "is a directory"),
    ("fgnas-table", ["show", "t.json"], "non-finite number"),
])
def test_console_scripts_exit_2_with_one_line_and_no_traceback(tmp_path, script, args, message):
    (tmp_path / "reports").mkdir()
    _edited_table(set_at(["conditions", 0, "b_ms"], float("nan")), rehash=False)(tmp_path)
    before = snapshot(tmp_path)
    done = console(script, *args, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert snapshot(tmp_path) == before


# ---- the resume rule on its own (a farm, a second phone under --device android) ------------------------------------

def _records(*identities: dict, settings: dict | None = None) -> list[dict]:
    settings = settings or measurement_settings(SETTINGS)
    return [{"v": 1, "kind": "conv", "id": "x", "spec": {}, "m": {}, **i, "settings": settings} for i in identities]


PHONE_A = {"device": "android", "serial": "A1", "hardware": "Pixel 4"}
PHONE_B = {"device": "android", "serial": "B2", "hardware": "Pixel 4"}


def test_a_second_phone_under_device_android_does_not_continue_the_first_phones_log():
    with pytest.raises(FgnasError, match="holds measurements of android serial A1 .*not of android serial B2"):
        check_resume(_records(PHONE_A), Path("android.raw.jsonl"), [PHONE_B], measurement_settings(SETTINGS))


def test_a_farm_may_go_on_with_fewer_of_its_phones_but_not_with_a_new_one():
    log = _records(PHONE_A, PHONE_B)
    check_resume(log, Path("x"), [PHONE_A], measurement_settings(SETTINGS))
    with pytest.raises(FgnasError, match="serial C3"):
        check_resume(log, Path("x"), [PHONE_A, {**PHONE_A, "serial": "C3"}], measurement_settings(SETTINGS))


def test_a_phone_of_another_model_with_the_same_serial_is_another_device():
    with pytest.raises(FgnasError, match="a new --out"):
        check_resume(_records(PHONE_A), Path("x"), [{**PHONE_A, "hardware": "Pixel 5"}],
                     measurement_settings(SETTINGS))


def test_an_old_log_without_hardware_or_settings_is_compared_on_device_and_serial():
    old = [{"v": 1, "kind": "conv", "id": "x", "spec": {}, "m": {}, "device": "android", "serial": "A1"}]
    check_resume(old, Path("x"), [PHONE_A], measurement_settings(SETTINGS.overridden(runs=99)))
    with pytest.raises(FgnasError, match="not of android serial B2"):
        check_resume(old, Path("x"), [PHONE_B], measurement_settings(SETTINGS))


def test_other_use_xnnpack_is_other_settings():
    with pytest.raises(FgnasError, match="use_xnnpack=False"):
        check_resume(_records(PHONE_A), Path("x"), [PHONE_A],
                     {**measurement_settings(SETTINGS), "use_xnnpack": False})
