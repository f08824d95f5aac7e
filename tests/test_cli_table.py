import json
import subprocess
import sys
from pathlib import Path

import pytest

import synthetic_table as syn
from profiler.latency.cli_table import SUBCOMMANDS, main
from profiler.latency.table import LatencyTable, content_hash

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def table_path(tmp_path):
    recs = syn.records()
    raw = syn.write_raw_log(tmp_path / "t.raw.jsonl", recs)
    return LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw).save(tmp_path / "t.json")


def _scaled_table(tmp_path, factor):
    recs = syn.records()
    for r in recs:
        if r["kind"] == "conv" and r["spec"]["h"] == 16:
            r["m"]["median_ms"] *= factor
    raw = syn.write_raw_log(tmp_path / "b.raw.jsonl", recs)
    return LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw).save(tmp_path / "b.json")


def test_subcommands_come_from_the_registry():
    assert {"show", "plot", "diff", "predict", "import"} <= set(SUBCOMMANDS)


def test_show_summarises_device_source_errors_and_worst_fits(table_path, capsys):
    assert main(["show", str(table_path)]) == 0
    out = capsys.readouterr().out
    assert "name=synthetic" in out and "kind=measured" in out
    assert "conditions: 4 (4 tile-aware, 0 affine), 40 measurements" in out
    assert "tiles: cout 32/cin 1: 4" in out
    assert "worst 4 fits" in out and "8x8:k3:s1:normal:relu" in out
    assert "ADD" in out and "output_elements" in out


def test_show_displays_an_imported_tables_provenance(tmp_path, capsys):
    recs = syn.records()
    raw = syn.write_raw_log(tmp_path / "r.jsonl", recs)
    source = {"kind": "imported", "format": "proxylessnas", "validation": {"held_out": {"median": 0.016}}}
    path = LatencyTable.build(recs, {"name": "pixel1"}, {}, raw, source=source).save(tmp_path / "p.json")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kind=imported, format=proxylessnas" in out and '"median": 0.016' in out


def test_predict_one_conv(table_path, capsys):
    assert main(["predict", str(table_path), "--conv", "16x16x50:33:k3:s1:relu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ms"] == pytest.approx(0.02 * 14.7456 + 0.05)
    assert result["condition"] == "16x16:k3:s1:normal:relu" and result["fallback"] is None
    assert main(["predict", str(table_path), "--conv", "16x16x50:33:k3:s1:relu6"]) == 0
    assert "relu6 priced from relu" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--conv", "16x16x50:33:k5:s1:relu"], "no condition 16x16:k5:s1:normal:relu"),
    (["--conv", "16x16:33"], "cannot read conv"),
    ([], "give either a MODEL.tflite or --conv"),
])
def test_predict_bad_input_is_one_line_exit_2(table_path, capsys, argv, message):
    assert main(["predict", str(table_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_plot_writes_one_png_per_condition(table_path, tmp_path):
    out = tmp_path / "plots"
    assert main(["plot", str(table_path), "--out", str(out)]) == 0
    pngs = sorted(p.name for p in out.iterdir())
    assert pngs == ["16x16_k3_s1_depthwise_relu.png", "16x16_k3_s1_normal_relu.png", "8x8_k3_s1_depthwise_relu.png",
                    "8x8_k3_s1_normal_relu.png"]
    assert all((out / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_plot_without_the_raw_log_says_so(table_path, tmp_path, capsys):
    (tmp_path / "t.raw.jsonl").unlink()
    assert main(["plot", str(table_path), "--out", str(tmp_path / "plots")]) == 2
    assert "raw log" in capsys.readouterr().err


def test_diff_reports_the_conditions_that_moved(table_path, tmp_path, capsys):
    other = _scaled_table(tmp_path, 1.25)
    assert main(["diff", str(table_path), str(other)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    moved = [line for line in lines if line.lstrip().startswith("16x16")]
    still = [line for line in lines if line.lstrip().startswith("8x8")]
    assert len(moved) == 2 and all("+25.0%" in line for line in moved)
    # family-pooled tile and term choices see the moved conditions too: the others may move by a rounding error
    assert len(still) == 2 and all("+0.0%" in line or "-0.0%" in line for line in still)
    assert "device: unchanged" in out and "ops: unchanged" in out


def test_newer_schema_is_refused_by_the_cli(table_path, capsys):
    doc = json.loads(table_path.read_text())
    doc["schema_version"] = 7
    doc["content_hash"] = content_hash(doc)
    table_path.write_text(json.dumps(doc))
    assert main(["show", str(table_path)]) == 2
    err = capsys.readouterr().err
    assert "schema_version 7" in err and "upgrade fgnas" in err and err.count("\n") == 1


def test_console_script_imports_neither_torch_nor_tensorflow_and_exits_2(tmp_path):
    code = ("import sys; from profiler.latency.cli_table import main; rc = main(['show', sys.argv[1]]); "
            "heavy = [m for m in ('torch', 'tensorflow') if m in sys.modules]; print(heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "absent.json")], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stdout.strip() == "[]"
    assert proc.stderr.startswith("fgnas-table: no latency table at") and proc.stderr.count("\n") == 1
