import json

import pytest

from export.summary import main, summarize
from helpers import searched_run
from profiler.errors import FgnasError


def _write_run(tmp_path, check_status="pass"):
    run = tmp_path / "run"
    searched_run(run, extra={"target": {"resource": "latency", "value": 0.3, "text": "60%latency"},
                             "predicted": {"latency_ms": 0.29},
                             "search": {"data": "digits", "val_accuracy": 0.975, "pruned_to_target": False,
                                        "search_epochs": 1.5}})
    (run / "export").mkdir()
    (run / "export" / "export_report.json").write_text(json.dumps({"accuracy": {"pytorch": 0.975, "tflite": 0.972}}))
    check = tmp_path / "check.json"
    check.write_text(json.dumps({"status": check_status, "checks": [
        {"name": "budget", "budget_ms": 0.3, "latency_ms": {"estimate": 0.31}}]}))
    return run, check


def test_summary_reports_promised_and_measured_figures(tmp_path):
    run, check = _write_run(tmp_path, "fail")
    s = summarize(run, check)
    arch = json.loads((run / "arch.json").read_text())
    assert (s.params, s.flops) == (arch["predicted"]["params"], arch["predicted"]["flops"]) and s.params > 0
    assert (s.predicted_ms, s.measured_ms, s.budget_ms) == (0.29, 0.31, 0.3)
    assert s.val_accuracy == 0.975 and s.tflite_accuracy == 0.972 and s.check_status == "fail"
    text = "\n".join(s.lines())
    assert "60%latency = 0.3ms" in text and "measured 0.310 ms" in text and "0.300 ms: fail" in text


def test_summary_without_check_says_it_was_not_run(tmp_path):
    run, _ = _write_run(tmp_path)
    assert summarize(run).measured_ms is None
    assert "not run" in "\n".join(summarize(run).lines())


def test_run_without_export_is_one_line_exit_2(tmp_path, capsys):
    run, check = _write_run(tmp_path)
    (run / "export" / "export_report.json").unlink()
    with pytest.raises(FgnasError, match="run fgnas-export first"):
        summarize(run, check)
    assert main([str(run)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_an_arch_that_is_no_architecture_is_one_line_exit_2(tmp_path, capsys):
    run, check = _write_run(tmp_path)
    arch = json.loads((run / "arch.json").read_text())
    del arch["layers"]
    (run / "arch.json").write_text(json.dumps(arch))
    assert main([str(run), "--check", str(check)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "arch.json" in err
