"""fgnas-export on run directories: bad input is one line and exit code 2; a finished run exports end to end."""
import json

import pytest
import torch

from export.assembly import SearchTableChanged
from export.cli import _table, build_parser, main
from helpers import searched_run, synthetic_table_file
from profiler.latency.table import LatencyTable


def _fails_with_one_line(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0] and "Traceback" not in err[0]


def test_a_run_without_a_finished_search_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    _fails_with_one_line(capsys, [str(tmp_path / "run")], "--resume")
    _fails_with_one_line(capsys, [str(tmp_path / "nothing")], "not a directory")


def test_an_arch_json_of_a_newer_schema_is_refused(tmp_path, capsys):
    rd = searched_run(tmp_path / "run")
    arch = json.loads(rd.file("arch.json").read_text())
    arch["schema_version"] += 1
    rd.file("arch.json").write_text(json.dumps(arch))
    _fails_with_one_line(capsys, [str(rd.path)], "newer")


def test_weights_that_do_not_match_the_architecture_are_refused(tmp_path, capsys):
    rd = searched_run(tmp_path / "run")
    sd = torch.load(rd.file("model.pt"))
    sd["layers.conv2.ops.0.conv.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(sd, rd.file("model.pt"))
    _fails_with_one_line(capsys, [str(rd.path)], "do not match")
    other = searched_run(tmp_path / "other", seed=7)  # same shapes, other gates
    rd.file("model.pt").write_bytes(other.file("model.pt").read_bytes())
    _fails_with_one_line(capsys, [str(rd.path)], "gates select other channels")
    rd.file("model.pt").write_bytes(b"not a checkpoint")
    _fails_with_one_line(capsys, [str(rd.path)], "cannot be read")


def _record_table(rd, info):
    arch = json.loads(rd.file("arch.json").read_text())
    arch["latency_table"] = info
    rd.file("arch.json").write_text(json.dumps(arch))
    return arch


def test_a_table_changed_or_gone_since_the_search_stops_export_naming_the_searchs_table(tmp_path, capsys):
    path = synthetic_table_file(tmp_path / "t.json")
    now = LatencyTable.load(path)
    rd = searched_run(tmp_path / "run")
    _record_table(rd, {"path": str(path), "table_version": 3, "content_hash": "sha256:0123"})  # a re-profile since
    for match in (str(path), "version 3", "sha256:0123", now.content_hash, "--table PATH"):
        _fails_with_one_line(capsys, [str(rd.path), "--device", "none"], match)
    assert not (rd.path / "export").exists()
    path.unlink()
    _fails_with_one_line(capsys, [str(rd.path), "--device", "none"], f"no longer at {path}")


def test_export_takes_the_searchs_table_only_while_its_content_hash_matches(tmp_path):
    path = synthetic_table_file(tmp_path / "t.json")
    rd = searched_run(tmp_path / "run")
    recorded = {"path": str(path), "table_version": 1, "content_hash": LatencyTable.load(path).content_hash}
    arch = _record_table(rd, recorded)
    assert _table(build_parser().parse_args([str(rd.path)]), arch) == path
    changed = {**arch, "latency_table": {**arch["latency_table"], "content_hash": "sha256:0"}}
    with pytest.raises(SearchTableChanged):
        _table(build_parser().parse_args([str(rd.path)]), changed)
    other = tmp_path / "other.json"  # an explicit --table is the user's choice: used as given
    assert _table(build_parser().parse_args([str(rd.path), "--table", str(other)]), changed) == other


@pytest.mark.slow
def test_a_finished_run_exports_with_parity_accuracy_and_measured_latency(tmp_path, capsys):
    rd = searched_run(tmp_path / "run")
    # the table (device_tables/host-amd-f26m2s1.json by default) only prices: it need not be this machine's (issue 16)
    assert main([str(rd.path), "--device", "host", "--runs", "3", "--warmup", "1", "--eval-samples", "100",
                 "--parity-samples", "16", "--quantize", "dynamic", "--allow-other-device"]) == 0
    out = capsys.readouterr().out
    assert "parity LiteRT" in out and "whole model" in out
    report = json.loads((rd.path / "export" / "export_report.json").read_text())
    assert report["tflite_ops"].get("TRANSPOSE", 0) == 0
    assert all(p["passed"] for p in report["parity"] if p["enforced"])
    assert report["accuracy"]["tflite"] == report["accuracy"]["pytorch"]
    assert {"model.tflite", "model.onnx", "model_dynamic.tflite"} <= {p.name for p in (rd.path / "export").iterdir()}
    layers = report["latency"]["layers"]
    arch = json.loads(rd.file("arch.json").read_text())
    assert [r["name"] for r in layers] == [layer["name"] for layer in arch["layers"]]
    assert all(r["measured_ms"] > 0 for r in layers) and report["latency"]["model_measured_ms"] > 0
    assert all((r["single_conv_ms"] is None) == (r["convs"] < 2) for r in layers)
