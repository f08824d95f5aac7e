"""The closing summary of a pipeline run (`make demo`): what the search promised, what export and the device delivered.

Reads the run directory only (arch.json as the typed search.arch.Arch, export/export_report.json and the fgnas-check
JSON), so it can be printed again at any time: `python -m export.summary RUN_DIR --check CHECK.json`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from profiler.cli_parser import OneLineParser
from profiler.errors import FgnasError
from search.arch import load_arch
from search.summary import method_line
from search.targets import format_resource


@dataclass(frozen=True)
class PipelineSummary:
    target: str
    val_accuracy: float | None
    tflite_accuracy: float | None
    params: int
    flops: float
    predicted_ms: float | None
    measured_ms: float | None
    budget_ms: float | None
    check_status: str | None
    method: str  # how the search reached its architecture (a fallback is said plainly)

    def lines(self) -> list[str]:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.2f}%"

        predicted = "-" if self.predicted_ms is None else f"{self.predicted_ms:.3f} ms"
        measured = "-" if self.measured_ms is None else f"{self.measured_ms:.3f} ms"
        budget = "-" if self.budget_ms is None else f"{self.budget_ms:.3f} ms"
        return [
            f"target            {self.target}",
            f"accuracy          {pct(self.val_accuracy)} (PyTorch, search validation)   "
            f"{pct(self.tflite_accuracy)} (exported TFLite)",
            f"params            {format_resource('params', self.params)}",
            f"FLOPs             {format_resource('flops', self.flops)}",
            f"latency           predicted {predicted} (table)   measured {measured} (device)",
            f"budget check      {budget}: {self.check_status or 'not run'}",
            f"architecture      {self.method}",
        ]


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FgnasError(f"{path} not found: run {what} first") from None
    except json.JSONDecodeError as exc:
        raise FgnasError(f"{path} is not valid JSON ({exc.msg}); run {what} again") from None


def summarize(run_dir: Path, check_json: Path | None = None) -> PipelineSummary:
    arch = load_arch(run_dir / "arch.json")
    report = _read_json(run_dir / "export" / "export_report.json", "fgnas-export")
    check = _read_json(check_json, "fgnas-check --json") if check_json else None
    budget = next((c for c in check["checks"] if c["name"] == "budget"), None) if check else None
    target, search = arch.target or {}, dict(arch.search or {})
    return PipelineSummary(
        target=(f"{target.get('text', '-')} = {format_resource(target['resource'], target['value'])}"
                if "resource" in target else "-"),
        val_accuracy=search.get("val_accuracy"),
        tflite_accuracy=(report.get("accuracy") or {}).get("tflite"),
        params=arch.predicted.params,
        flops=arch.predicted.flops,
        predicted_ms=arch.predicted.latency_ms,
        measured_ms=budget["latency_ms"]["estimate"] if budget else None,
        budget_ms=budget["budget_ms"] if budget else None,
        check_status=check["status"] if check else None,
        method=method_line(search),
    )


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m export.summary", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--check", type=Path, help="the JSON written by fgnas-check --json")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.run_dir, args.check)
    except FgnasError as exc:
        print(f"summary: {exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(["", "fgnas pipeline summary", *summary.lines()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
