import json
import subprocess
from pathlib import Path

import pytest

import synthetic_table as syn
from profiler.latency.table import LatencyTable
from search.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--epochs-pretrain", "1", "--epochs-search", "4", "--epochs-finetune", "1", "--batch-size", "64",
        "--train-subset", "256", "--val-subset", "128", "--quiet"]


@pytest.fixture()
def table_16_8(tmp_path):
    """A real table (synthetic measurements) that covers 16x16 and 8x8 k3 only: the digits net needs 32x32 too."""
    recs = syn.records()
    raw = syn.write_raw_log(tmp_path / "t.raw.jsonl", recs)
    return LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw).save(tmp_path / "t.json")


def _one_line_error(capsys, code: int, expected_code: int = 2) -> str:
    err = capsys.readouterr().err
    assert code == expected_code
    assert err.startswith("fgnas-search: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_table_missing_conditions_lists_them_and_the_profile_command(capsys, table_16_8, tmp_path):
    code = main(["--target", "0.1ms", "--latency-table", str(table_16_8), "--out", str(tmp_path / "r")] + TINY)
    err = _one_line_error(capsys, code)
    assert "32x32:k3:s1:normal:relu" in err
    assert "fgnas-profile --device synthetic --space cifar --kernels 1,3" in err
    assert not (tmp_path / "r").exists()


def test_unreachable_target_is_refused_at_once(capsys, tmp_path):
    err = _one_line_error(capsys, main(["--target", "10params", "--out", str(tmp_path / "r")] + TINY))
    assert "below the smallest network" in err


@pytest.mark.parametrize("data", ["cifar10:/no/such/dir", "imagenet:/x"])
def test_wrong_data_is_one_line(capsys, tmp_path, data):
    err = _one_line_error(capsys, main(["--target", "5MFLOPs", "--data", data, "--out", str(tmp_path / "r")] + TINY))
    assert "cifar10" in err


def test_resume_of_another_runs_directory_is_refused(capsys, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"target": "9MFLOPs", "backbone": "vgg16", "data": "digits"}))
    err = _one_line_error(capsys, main(["--resume", str(run), "--backbone", "digits"]))
    assert "different run" in err and "backbone 'vgg16' there, 'digits' here" in err
    err = _one_line_error(capsys, main(["--resume", str(tmp_path / "nothing-here")]))
    assert "not a fgnas-search run directory" in err


def test_missing_target_and_bad_target_text(capsys, tmp_path):
    assert "give a target" in _one_line_error(capsys, main(["--out", str(tmp_path / "r")]))
    assert "cannot read target" in _one_line_error(capsys, main(["--target", "fast", "--out", str(tmp_path / "r")]))


@pytest.mark.slow
def test_console_script_searches_digits_to_a_params_target(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "fgnas-search"), "--target", "100Kparams", "--out",
                           str(run)] + TINY, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "meets target 100Kparams" in proc.stdout
    arch = json.loads((run / "arch.json").read_text())
    assert arch["predicted"]["params"] <= 100_000
    assert arch["target"]["text"] == "100Kparams"
