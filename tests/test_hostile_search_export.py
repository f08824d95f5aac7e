"""Hostile but realistic input to fgnas-search and fgnas-export, and to the files they read (issue 14).

Every case runs one CLI's main(argv) in a fresh folder and asserts its exit code, exactly one line on stderr naming
the problem, no traceback, and that no file in the folder changed and none appeared. Nothing here trains or
converts: each refusal comes before the first epoch (search) or before TensorFlow is asked for a graph (export).
The search cases use the embedded digits data with tiny settings, so a case that failed to refuse would still end
within seconds instead of hanging the suite.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from export import cli as export_cli
from helpers import console, refuses_in_one_line, searched_run, set_at
from profiler.adb_sim import arm64_elf_stub
from profiler.errors import FgnasError
from profiler.gate import cli_check
from search import cli as search_cli

MAINS: dict[str, Callable[[list[str]], int]] = {"search": search_cli.main, "export": export_cli.main,
                                                "check": cli_check.main}
# Flags a case adds after these win (argparse keeps the last value), so a case names only what it breaks.
TINY = ["--backbone", "digits", "--data", "digits", "--epochs-pretrain", "0", "--epochs-search", "1",
        "--epochs-finetune", "0", "--train-subset", "128", "--val-subset", "64", "--batch-size", "32", "--quiet",
        "--device", "cpu", "--precision", "fp32", "--out", "run"]
EXPORT = ["run", "--device", "none", "--out", "exported", "--parity-samples", "2", "--eval-samples", "10"]


# ---- files the cases start from ----------------------------------------------------------------------------------

def _jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (shade, 255 - shade, 0)).save(out, "JPEG")
    return out.getvalue()


def _image_folder(root: Path, bad: bytes | None = None, val: str = "test") -> None:
    """train/ and VAL/ with two classes of two 32x32 JPEGs; train/b/1.jpg replaced by `bad`."""
    for split in ("train", val):
        for c, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                (root / split / cls / f"{i}.jpg").write_bytes(_jpeg(60 * c + 20 * i))
    if bad is not None:
        (root / "train" / "b" / "1.jpg").write_bytes(bad)


def _folder(bad: bytes, val: str = "test") -> Callable[[Path], None]:
    return lambda ws: _image_folder(ws / "data", bad, val)


def _archive(bad_member: bytes | None = None, cut: float | None = None, garbage: bool = False,
             val: str = "test") -> Callable[[Path], None]:
    """data.tar.gz of an image folder: with a corrupt member, cut to a share of its bytes, or random bytes."""
    def setup(ws: Path) -> None:
        if garbage:
            (ws / "data.tar.gz").write_bytes(os.urandom(600))
            return
        src = ws.parent / "src"
        _image_folder(src, bad_member, val)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(src, arcname="images")
        shutil.rmtree(src)
        data = buffer.getvalue()
        (ws / "data.tar.gz").write_bytes(data if cut is None else data[:int(len(data) * cut)])
    return setup


def _arch_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        path = ws / "run" / "arch.json"
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))  # json.dumps writes NaN and Infinity as JavaScript does
    return setup


def _arch_bytes(make: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        path = ws / "run" / "arch.json"
        path.write_bytes(make(path.read_bytes()))
    return setup


def _drop(path: list) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


def _phone_binary(ws: Path) -> None:
    (ws / "m.tflite").write_bytes(b"\0\0\0\0TFL3" + b"\0" * 64)
    (ws / "benchmark_model").write_bytes(arm64_elf_stub())


# ---- the cases -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    cli: str
    argv: list[str]
    code: int
    message: str
    setup: Callable[[Path], None] = lambda ws: None
    env: dict[str, str] = field(default_factory=dict)


def search(id: str, extra: list[str], message: str, setup: Callable[[Path], None] = lambda ws: None) -> Case:
    return Case(f"search-{id}", "search", [*TINY, *extra], 2, message, setup)


def export(id: str, message: str, setup: Callable[[Path], None]) -> Case:
    return Case(f"export-{id}", "export", EXPORT, 2, message, setup)


CASES = [
    # fgnas-search: a target no network can have
    search("target-overflows-to-infinity", ["--target", "1e309ms"], "target '1e309ms' must be positive and finite"),
    search("target-flops-overflow", ["--target", "1e300GFLOPs"], "must be positive and finite"),
    search("target-negative", ["--target", "-5ms"], "target '-5ms' must be positive and finite"),
    search("target-negative-no-leading-digit", ["--target", "-.5Mparams"], "must be positive and finite"),
    search("target-zero", ["--target", "0ms"], "target '0ms' must be positive and finite"),
    search("seed-negative", ["--target", "50%flops", "--seed", "-1"], "--seed -1: give a whole number >= 0"),
    search("train-subset-negative", ["--target", "50%flops", "--train-subset", "-5"],
           "--train-subset -5: give a whole number >= 1"),
    search("batch-size-not-a-number", ["--target", "50%flops", "--batch-size", "abc"],
           "argument --batch-size: invalid int value: 'abc'"),
    search("target-nan-is-no-number", ["--target", "nanms"], "cannot read target 'nanms'"),
    search("target-share-above-all", ["--target", "150%flops"], "at most 100% of the unpruned network"),
    # fgnas-search: numbers SearchConfig refuses, each named by its flag
    search("lr-nan", ["--target", "30%flops", "--lr", "nan"], "--lr nan: give a finite number"),
    search("lr-negative-exponent", ["--target", "30%flops", "--lr", "-1e-3"], "--lr -0.001: must be > 0"),
    search("gate-lr-infinite", ["--target", "30%flops", "--gate-lr", "inf"], "--gate-lr inf: give a finite number"),
    search("lambda-negative", ["--target", "30%flops", "--lambda", "-2e-9"], "--lambda -2e-09: must be > 0"),
    search("width-negative", ["--target", "30%flops", "--width", "-1"], "--width -1.0: must be > 0"),
    search("epochs-search-negative", ["--target", "30%flops", "--epochs-search", "-3"],
           "--epochs-search -3: must be >= 0"),
    search("batch-size-zero", ["--target", "30%flops", "--batch-size", "0"], "--batch-size 0: must be > 0"),
    search("min-channels-zero", ["--target", "30%flops", "--min-channels", "0"], "--min-channels '0': give a share"),
    search("max-off-share-above-one", ["--target", "30%flops", "--max-off-share", "2"],
           "--max-off-share and --plan-share are shares"),
    search("baseline-uniform-target-below-every-width", ["--target", "1KFLOPs", "--baseline", "uniform"],
           "--baseline uniform: no width multiplier meets 1KFLOPs"),
    search("min-channels-floor-above-target", ["--target", "30%flops", "--min-channels", "0.9"],
           "below the smallest network this backbone and search space can reach with --min-channels 0.9"),
    search("resume-not-a-run", ["--target", "30%flops", "--resume", "elsewhere"],
           "is not a fgnas-search run directory"),
    # fgnas-search: damaged data, named by the file
    search("cifar10-folder-corrupt-jpeg", ["--target", "30%flops", "--data", "cifar10:data"],
           "data/train/b/1.jpg is not a readable image (no image format recognised)", _folder(b"not a jpeg")),
    search("imagefolder-truncated-jpeg", ["--target", "30%flops", "--data", "imagefolder:data"],
           "data/train/b/1.jpg is not a readable image", _folder(_jpeg(9)[:200], val="val")),
    search("cifar10-tar-corrupt-member", ["--target", "30%flops", "--data", "cifar10:data.tar.gz"],
           "data.tar.gz:images/train/b/1.jpg is not a readable image", _archive(bad_member=b"\xff\xd8garbage")),
    search("cifar10-tar-truncated", ["--target", "30%flops", "--data", "cifar10:data.tar.gz"],
           "data.tar.gz is not a readable tar archive (EOFError", _archive(cut=0.5)),
    search("cifar10-tar-garbage", ["--target", "30%flops", "--data", "cifar10:data.tar.gz"],
           "data.tar.gz is not a readable tar archive (no tar", _archive(garbage=True)),
    search("imagefolder-tar-truncated", ["--target", "30%flops", "--data", "imagefolder:data.tar.gz"],
           "data.tar.gz is not a readable tar archive", _archive(cut=0.6, val="val")),
    # fgnas-export: arch.json validated once, where it is read
    export("arch-width-a-string", "backbone/args/width: 'wide' is not of type 'number'",
           _arch_edit(set_at(["backbone", "args", "width"], "wide"))),
    export("arch-width-negative", "backbone/args/width: -1 is less than or equal to the minimum of 0",
           _arch_edit(set_at(["backbone", "args", "width"], -1))),
    export("arch-cout-negative", "layers/0/cout: -3 is less than the minimum of 1",
           _arch_edit(set_at(["layers", 0, "cout"], -3))),
    export("arch-cout-huge", "layer conv1 op 0 keeps channels outside 0..999999999999",  # compared, not enumerated
           _arch_edit(lambda a: (set_at(["layers", 0, "cout"], 10 ** 12)(a),
                                 set_at(["layers", 0, "ops", 0, "keep"], [0, 10 ** 12])(a)))),
    export("arch-keep-out-of-range", "layer conv1 op 0 keeps channels outside 0..15",
           _arch_edit(set_at(["layers", 0, "ops", 0, "keep"], [0, 99]))),
    export("arch-keep-negative", "layers/0/ops/0/keep/0: -1 is less than the minimum of 0",
           _arch_edit(set_at(["layers", 0, "ops", 0, "keep"], [-1]))),
    export("arch-keep-repeated", "layers/0/ops/0/keep: [0, 0] has non-unique elements",
           _arch_edit(set_at(["layers", 0, "ops", 0, "keep"], [0, 0]))),
    export("arch-active-in-out-of-range", "layer conv2 has active input channels outside 0..15",
           _arch_edit(set_at(["layers", 1, "active_in"], [0, 999]))),
    export("arch-missing-head", "top level: 'head' is a required property", _arch_edit(_drop(["head"]))),
    export("arch-missing-input-channels", "input: 'channels' is a required property",
           _arch_edit(_drop(["input", "channels"]))),
    export("arch-head-reads-no-layer", "the head reads layer 'nowhere', which is not in layers",
           _arch_edit(set_at(["head", "input"], "nowhere"))),
    export("arch-stride-zero", "layers/0/stride: 0 is less than the minimum of 1",
           _arch_edit(set_at(["layers", 0, "stride"], 0))),
    export("arch-input-height-a-string", "input/height: '32' is not of type 'integer'",
           _arch_edit(set_at(["input", "height"], "32"))),
    export("arch-nan-scale", "layers/0/scale: NaN or infinity, not a finite number",
           _arch_bytes(lambda b: b.replace(b'"scale": ', b'"scale": NaN, "was": ', 1))),
    export("arch-infinite-predicted-latency", "predicted/latency_ms: NaN or infinity",
           _arch_edit(set_at(["predicted", "latency_ms"], float("inf")))),
    export("arch-not-utf8", "is not JSON ('utf-8' codec can't decode", _arch_bytes(lambda b: b[:-2] + b'\xff}')),
    export("arch-nested-too-deeply", "is not an architecture file (nested too deeply)",
           _arch_bytes(lambda b: b"[" * 100_000 + b"]" * 100_000)),
    export("arch-a-list", "top level: [] is not of type 'object'", _arch_bytes(lambda b: b"[]")),
    # the phone link's environment, read before any connection
    Case("adb-retries-not-a-number", "check",
         ["m.tflite", "--device", "pixel1", "--serial", "127.0.0.1:9", "--budget", "5ms", "--benchmark-binary",
          "benchmark_model"], 2, "FGNAS_ADB_RETRIES='three': give a whole number", _phone_binary,
         {"FGNAS_ADB_RETRIES": "three"}),
    Case("adb-retries-negative", "check",
         ["m.tflite", "--device", "pixel1", "--serial", "127.0.0.1:9", "--budget", "5ms", "--benchmark-binary",
          "benchmark_model"], 2, "FGNAS_ADB_RETRIES='-1': give a whole number", _phone_binary,
         {"FGNAS_ADB_RETRIES": "-1"}),
    Case("adb-backoff-not-a-number", "check",
         ["m.tflite", "--device", "pixel1", "--serial", "127.0.0.1:9", "--budget", "5ms", "--benchmark-binary",
          "benchmark_model"], 2, "FGNAS_ADB_BACKOFF_S='soon': give a number of seconds", _phone_binary,
         {"FGNAS_ADB_BACKOFF_S": "soon"}),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run directory (arch.json + model.pt of a randomly gated digits network), made once: no training."""
    return searched_run(tmp_path_factory.mktemp("finished") / "run").path


def _run(case: Case, ws: Path, capsys, monkeypatch) -> str:
    cache = ws.parent / "cache"
    monkeypatch.setenv("FGNAS_CACHE", str(cache))  # decoded data never lands in the user's ~/.cache
    monkeypatch.setenv("HOME", str(ws.parent / "home"))  # nor an ADB key in the user's ~/.android
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    err = refuses_in_one_line(MAINS[case.cli], case.argv, ws, capsys, case.code, case.message)
    # a refused decode leaves no array or temp file in the cache (an archive's class list may stay: it is complete)
    assert not [p for p in cache.rglob("*") if p.suffix in (".npy", ".tmp")] if cache.exists() else True
    assert not (ws.parent / "home").exists()
    return err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_line_and_its_exit_code_and_changes_no_file(case, tmp_path, capsys, monkeypatch,
                                                                         finished_run):
    ws = tmp_path / "ws"
    ws.mkdir()
    if case.cli == "export":
        shutil.copytree(finished_run, ws / "run")
    case.setup(ws)
    _run(case, ws, capsys, monkeypatch)


def test_there_are_enough_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert sum(c.cli == "search" for c in CASES) >= 20 and sum(c.cli == "export" for c in CASES) >= 15


def test_the_finished_run_itself_passes_the_checks_the_cases_break(finished_run):
    """The cases fail because of their one edit, not because the run they start from is refused."""
    from export.run import load_run

    assert load_run(finished_run).arch.layers


@pytest.mark.slow  # a fresh process importing torch: ~4 s
def test_fgnas_search_console_script_reads_a_negative_target_as_a_value(tmp_path):
    """Through sys.argv, as a shell runs it: `--target -5ms` reaches the target check, not argparse's
    'expected one argument'."""
    done = console("fgnas-search", *TINY, "--target", "-5ms", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == ["fgnas-search: target '-5ms' must be positive and finite"]
    assert not list(tmp_path.iterdir())


def test_dashed_values_attach_only_to_flags_that_take_one():
    parser = search_cli.build_parser()
    argv = ["--target", "-5ms", "--quiet", "--width", "-.5", "--lr", "-1e-3", "--seed", "3", "--", "-7"]
    assert search_cli.attach_dashed_values(parser, argv) == [
        "--target=-5ms", "--quiet", "--width=-.5", "--lr=-1e-3", "--seed", "3", "--", "-7"]


def test_a_model_that_is_not_tflite_is_the_users_file_and_not_to_be_deleted(tmp_path):
    """Only a model of the tool's own cache (model_builder's hash-named files) is 'deleted so that it is rebuilt'."""
    from profiler.measure.devices import create_device
    from profiler.measure.devices.base import BenchmarkSettings

    user = tmp_path / "my_model.tflite"
    cached = tmp_path / "0123456789abcdef.b1-tf2.21.0.tflite"
    for path in (user, cached):
        path.write_bytes(os.urandom(1024))
    # the last core: core 0 is the latency tables' (and may be timing now); loading garbage times nothing anyway
    with create_device("host", cpu=os.cpu_count() - 1) as host:
        with pytest.raises(FgnasError) as user_error:
            host.benchmark(user, BenchmarkSettings(runs=1, warmup=0))
        with pytest.raises(FgnasError) as cache_error:
            host.benchmark(cached, BenchmarkSettings(runs=1, warmup=0))
    assert "my_model.tflite" in str(user_error.value) and "delete" not in str(user_error.value)
    assert "give a .tflite converted by TensorFlow Lite" in str(user_error.value)
    assert "delete the file so that it is rebuilt" in str(cache_error.value)
    assert user.exists() and cached.exists()

