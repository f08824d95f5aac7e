"""Hostile input must never run code (issue 14): crafted checkpoints given to --resume and --pretrained, a crafted
CIFAR-10 batch, and model file names that are shell syntax on the phone. Each crafted file, when unpickled the old
way, runs `mkdir` of a marker folder; the tests check that the marker never appears. Also the image cache, which a
changed folder or a failed decode must not fool."""
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from profiler.errors import FgnasError
from profiler.measure.devices import BenchmarkSettings, create_device
from profiler.measure.devices.adb import remote_model_path, shell_command
from search.cli import main as search_main
from search.data import load_data
from search.rundir import RunDir
from search.train import SearchConfig, _read_pretrained

TINY = ["--epochs-pretrain", "1", "--epochs-search", "1", "--epochs-finetune", "1", "--batch-size", "64",
        "--train-subset", "128", "--val-subset", "64", "--quiet"]
FAST = BenchmarkSettings(threads=1, runs=5, warmup=2, timeout_s=30)


class RunsCommand:
    """What a crafted pickle holds: unpickling it calls os.system(command)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _one_line_exit_2(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("fgnas-search: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


# ---- checkpoints ------------------------------------------------------------------------------------------------

def test_a_crafted_checkpoint_given_to_resume_runs_nothing_and_a_real_one_still_loads(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    rundir = RunDir(tmp_path / "run")
    config = SearchConfig(target="9MFLOPs", backbone="digits", data="digits", train_subset=128, val_subset=64)
    rundir.start({**config.to_dict(), "latency_table_hash": None})
    torch.save({"model": RunsCommand(f"mkdir {marker}"), "state": {}, "optimizers": []}, rundir.file("checkpoint.pt"))
    err = _one_line_exit_2(capsys, search_main(["--resume", str(rundir.path), "--quiet"]))
    assert not marker.exists()
    assert "posix.system" in err and "could run code" in err

    # What the search saves (plain dicts, a state_dict, optimizer and GradScaler states) loads with weights_only.
    net = torch.nn.Linear(3, 2)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    adam = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    sgd.step()
    adam.step()
    scaler = torch.amp.GradScaler("cpu")
    payload = {"config": config.to_dict(), "state": {"phase": "search", "lam": 1e-9, "metrics": [{"epoch": 1}]},
               "model": net.state_dict(), "optimizers": [sgd.state_dict(), adam.state_dict()],
               "scaler": scaler.state_dict()}
    rundir.save_checkpoint(payload)
    loaded = rundir.load_checkpoint()
    assert loaded["config"] == payload["config"] and loaded["state"] == payload["state"]
    assert torch.equal(loaded["model"]["weight"], net.weight)
    assert loaded["optimizers"][0]["state"][0]["momentum_buffer"].shape == (2, 3)
    assert loaded["scaler"] == payload["scaler"]


def test_a_crafted_pretrained_checkpoint_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    crafted = tmp_path / "pretrained.pt"
    torch.save({"model": RunsCommand(f"mkdir {marker}")}, crafted)
    code = search_main(["--target", "9MFLOPs", "--pretrained", str(crafted), "--out", str(tmp_path / "r")] + TINY)
    err = _one_line_exit_2(capsys, code)
    assert not marker.exists()
    assert "--pretrained" in err and "posix.system" in err

    # A bare pickle (not torch's zip format) is refused the same way.
    crafted.write_bytes(__import__("pickle").dumps(RunsCommand(f"mkdir {marker}")))
    with pytest.raises(FgnasError, match="could run code"):
        _read_pretrained(str(crafted))
    assert not marker.exists()

    good = tmp_path / "good.pt"
    torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, good)
    assert set(_read_pretrained(str(good))) == {"weight", "bias"}


# ---- CIFAR-10 python batches ------------------------------------------------------------------------------------

def _py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as the original cifar-10-python.tar.gz has it: Python 2's cPickle, protocol 2, strings as BINSTRING,
    the array rebuilt by numpy.core.multiarray._reconstruct (assembled opcode by opcode: Python 3 cannot write it)."""
    def string(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def integer(n: int) -> bytes:
        return b"J" + struct.pack("<i", n)

    dtype = (b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R"
             + b"(" + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + integer(0) + b"\x85" + string(b"b")
             + b"\x87R(" + integer(1) + integer(data.shape[0]) + integer(data.shape[1]) + b"\x86" + dtype + b"\x89"
             + string(data.tobytes()) + b"tb")
    names = b"".join(string(b"%d.png" % k) for k in range(len(labels)))
    items = (string(b"batch_label") + string(b"training batch") + string(b"labels") + b"](" +
             b"".join(map(integer, labels)) + b"e" + string(b"data") + array + string(b"filenames") + b"](" + names
             + b"e")
    return b"\x80\x02}(" + items + b"u."


def test_a_crafted_cifar_batch_runs_nothing_and_original_batches_still_load(tmp_path, monkeypatch):
    import pickle

    monkeypatch.setenv("FGNAS_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "PWNED"
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    data = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data[name] = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        (root / name).write_bytes(_py2_batch(data[name], [1, 2, 3]))
    d = load_data(f"cifar10:{root}")
    assert (len(d.train), len(d.val)) == (15, 3)
    assert d.train.images[3, 0, 1, 2] == data["data_batch_2"][0][2048 + 1]  # blue plane, row 0, column 1
    assert list(d.val.labels) == [1, 2, 3]

    batch = {b"data": data["data_batch_3"], b"labels": [1, 2, 3], b"evil": RunsCommand(f"mkdir {marker}")}
    (root / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(FgnasError) as err:
        load_data(f"cifar10:{root}")
    assert not marker.exists()
    assert "data_batch_3" in str(err.value) and "posix.system" in str(err.value) and "\n" not in str(err.value)


def _png(path: Path, value: int, size: int = 32) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_an_image_added_to_a_class_folder_is_seen_and_a_failed_decode_leaves_no_temp_file(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FGNAS_CACHE", str(cache))
    root = tmp_path / "imgs"
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            _png(root / split / c / "0.png", 10)
    root_mtime = root.stat().st_mtime_ns
    assert len(load_data(f"cifar10:{root}").train) == 2
    _png(root / "train" / "dog" / "1.png", 20)  # the root folder's mtime does not change
    assert root.stat().st_mtime_ns == root_mtime
    assert len(load_data(f"cifar10:{root}").train) == 3

    _png(root / "train" / "dog" / "2.png", 30, size=16)  # decoding stops here, with the temp array half written
    with pytest.raises(FgnasError, match="2.png: image is 16x16"):
        load_data(f"cifar10:{root}")
    assert [p.name for p in cache.iterdir() if "tmp" in p.name] == []


# ---- model file names on the phone ------------------------------------------------------------------------------

HOSTILE_NAMES = ["m;mkdir PWNED1;.tflite", "m$(mkdir PWNED2).tflite", "m`mkdir PWNED3`.tflite",
                 "it's \"q\" && mkdir PWNED4.tflite", "with space | mkdir PWNED5.tflite"]


def _markers(sandbox: Path) -> list[Path]:
    return sorted(sandbox.rglob("PWNED*"))


def test_the_simulated_phone_runs_what_a_shell_would_and_nothing_quoted(sims):
    phone = sims.start("pixel1").phone
    assert phone.shell("echo a;mkdir /PWNED_a && echo b").decode() == "a\nb\n"
    assert phone.shell("echo $(mkdir /PWNED_b)`mkdir /PWNED_c`rc=$?").decode() == "rc=0\n"
    assert [p.name for p in _markers(phone.sandbox)] == ["PWNED_a", "PWNED_b", "PWNED_c"]
    shutil.rmtree(phone.sandbox / "PWNED_a")
    for name in HOSTILE_NAMES:
        assert phone.shell(shell_command("echo", name)).decode() == name + "\n"
    assert phone.shell("echo 'a;b' \"$(echo c d)\" \\;e").decode() == "a;b c d ;e\n"
    assert [p.name for p in _markers(phone.sandbox)] == ["PWNED_b", "PWNED_c"]


def test_hostile_model_names_are_timed_on_the_phone_and_run_nothing(sims, adb_env, small_models, tmp_path):
    server = sims.start("pixel1")
    models = []
    for name in HOSTILE_NAMES:
        models.append(tmp_path / name)
        shutil.copyfile(small_models[0], models[-1])
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env) as phone:
        phone.prepare(models)
        results = [phone.benchmark(model, FAST) for model in models]
    assert [m.count for m in results] == [FAST.runs] * len(models)
    assert _markers(server.phone.sandbox) == []
    assert server.phone.benchmark_runs == 1 + len(models)  # the --help check, then one run a model


def test_two_models_with_one_name_are_each_pushed_and_timed(sims, adb_env, small_models, tmp_path):
    server = sims.start("pixel1")
    first, second = tmp_path / "run1" / "model.tflite", tmp_path / "run2" / "model.tflite"
    for source, target in ((small_models[0], first), (small_models[1], second)):
        target.parent.mkdir()
        shutil.copyfile(source, target)
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env) as phone:
        for model in (first, second):
            phone.benchmark(model, FAST)
    remotes = [remote_model_path(m.read_bytes()) for m in (first, second)]
    assert remotes[0] != remotes[1] and all("model.tflite" not in r for r in remotes)
    assert [server.phone.read_file(r) for r in remotes] == [first.read_bytes(), second.read_bytes()]
    assert server.phone.benchmark_runs == 3
