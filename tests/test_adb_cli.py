"""Acceptance: `fgnas-profile --device pixel1 --serial 127.0.0.1:PORT` against simulated phones (real ADB over TCP),
with dropped connections, a farm of two phones where one dies, and the error paths' exit codes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.adb_sim import Faults, arm64_elf_stub
from profiler.measure.rawlog import read_records

# 2 kernels x 2 conv types x 10 channel samples = 40 convs at 8x8 measured once, plus the sweep's reference probe
SPACE = ["--space", "quick", "--resolutions", "8", "--kernels", "1,3", "--strides", "1", "--conv-types",
         "normal,depthwise", "--activations", "relu", "--samples-per-condition", "10", "--small-samples", "0",
         "--ops", "none", "--networks", "0", "--runs", "3", "--warmup", "1", "--passes", "1"]
N_CONVS = 40
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-model-cache")  # shared: only the first run pays TF's converter


@pytest.fixture
def run_cli(tmp_path, model_cache):
    home = tmp_path / "home"
    home.mkdir()
    binary = tmp_path / "android_aarch64_benchmark_model"
    binary.write_bytes(arm64_elf_stub())
    env = {k: v for k, v in os.environ.items() if k not in ("FGNAS_ADB_KEY", "FGNAS_BENCHMARK_MODEL")}
    env.update(HOME=str(home), FGNAS_ADB_RETRIES="2", FGNAS_ADB_BACKOFF_S="0.05", TF_CPP_MIN_LOG_LEVEL="3")

    def run(*args: str, binary_flag: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "profiler.measure.cli_profile", *args,
               "--out", str(tmp_path / "tables" / "pixel1.json"), "--cache-dir", str(model_cache)]
        if binary_flag:
            cmd += ["--benchmark-binary", str(binary)]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    run.table = tmp_path / "tables" / "pixel1.json"
    run.raw_log = tmp_path / "tables" / "pixel1.raw.jsonl"
    return run


def conv_ids(raw_log: Path) -> list[str]:
    return [r["id"] for r in read_records(raw_log) if r["kind"] == "conv"]


def test_profile_pixel1_against_simulated_phone_writes_a_pixel_table(sims, run_cli):
    import json

    phone = sims.start("pixel1")
    result = run_cli("--device", "pixel1", "--serial", phone.address, *SPACE)
    assert result.returncode == 0, result.stderr
    table = json.loads(run_cli.table.read_text())
    device = table["device"]
    assert device["name"] == "pixel1" and device["model"] == "Pixel"
    assert device["soc"] == "Snapdragon 821 (MSM8996 Pro)" and device["big_core_mask"] == "c"
    assert device["benchmark_tool"]["output_format"] == "current"
    assert len(table["conditions"]) == 4
    ids = conv_ids(run_cli.raw_log)
    assert len(ids) == N_CONVS == len(set(ids))
    assert {r["serial"] for r in read_records(run_cli.raw_log)} == {phone.address}


@pytest.mark.parametrize("k", [3, 7])
def test_dropped_connections_every_k_commands_still_measure_each_config_once(sims, run_cli, k):
    phone = sims.start("pixel1", Faults(drop_every=k))
    result = run_cli("--device", "pixel1", "--serial", phone.address, *SPACE)
    assert result.returncode == 0, result.stderr
    ids = conv_ids(run_cli.raw_log)
    assert len(ids) == N_CONVS == len(set(ids))
    reconnects = [r["m"]["extra"]["reconnects"] for r in read_records(run_cli.raw_log)]
    assert max(reconnects) > 0


def test_two_phones_split_a_sweep_and_one_dying_hands_its_share_over(sims, run_cli):
    steady = sims.start("pixel1")
    # connect (8 commands) + first batch's thermal read and 17 pushes (16 probes and the sweep's reference probe)
    # + 8 benchmark() calls (a thermal read and a benchmark_model run each; the stability guard may repeat some)
    dying = sims.start("pixel1", Faults(die_after=8 + 18 + 16))
    result = run_cli("--device", "pixel1", "--serial", steady.address, "--serial", dying.address, *SPACE)
    assert result.returncode == 0, result.stderr
    assert "failed devices" in result.stdout and dying.address in result.stdout
    records = read_records(run_cli.raw_log)
    convs = [r for r in records if r["kind"] == "conv"]
    assert len(convs) == N_CONVS == len({r["id"] for r in convs})
    per_serial = {s: sum(r["serial"] == s for r in records) for s in (steady.address, dying.address)}
    assert per_serial[dying.address] >= 1 and per_serial[steady.address] > per_serial[dying.address]


def test_wrong_phone_model_exits_2_with_one_line(sims, run_cli):
    phone = sims.start("pixel1")
    result = run_cli("--device", "galaxy-s8", "--serial", phone.address, *SPACE)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fgnas-profile: phone") and "reports model 'Pixel'" in last and "--force" in last


def test_missing_benchmark_binary_exits_2_with_the_fix(sims, run_cli):
    phone = sims.start("pixel1")
    result = run_cli("--device", "pixel1", "--serial", phone.address, *SPACE, binary_flag=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "android_aarch64_benchmark_model" in lines[0] and "--benchmark-binary" in lines[0]


def test_phone_unplugged_for_good_exits_3_with_resume_command(sims, run_cli):
    phone = sims.start("pixel1", Faults(die_after=8 + 18 + 16))  # dies during its 8th benchmark() call
    result = run_cli("--device", "pixel1", "--serial", phone.address, *SPACE)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert f"phone {phone.address} stopped answering" in result.stderr
    assert "resume with: fgnas-profile --device pixel1 --serial" in result.stderr
    kept = read_records(run_cli.raw_log)  # what was measured before the phone went is kept
    assert 1 <= len(kept) < N_CONVS and all(r["serial"] == phone.address for r in kept)
