"""The CI gate: time a model on a device and decide pass or fail against a latency budget, a stored baseline, or both.

Relative mode measures the model and the fixed reference model interleaved in pairs, in the order A B B A A B ...
(a slow drift during the run then weighs on both alike), after one discarded warm-up pair. Each measurement is the
median of `settings.runs` invocations; the pairs' log ratios give the ratio and its confidence interval
(profiler.gate.check_stats). Only the Device interface is used, so a phone is checked exactly like this computer.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from profiler.errors import FgnasError
from profiler.gate.check_baseline import Baseline, fingerprint, load_baseline, require_same_device, save_baseline
from profiler.gate.check_stats import (
    Interval,
    change_interval,
    is_regression,
    is_undecided,
    is_within_budget,
    latency_interval,
    log_ratios,
    ratio_interval,
)
from profiler.measure.devices.base import BenchmarkSettings, Device
from profiler.measure.model_builder import DEFAULT_CACHE_DIR
from profiler.measure.reference_model import REFERENCE_SPEC, file_sha256, reference_model
from profiler.spec import ConvSpec

WARMUP_PAIRS = 1
# A machine that was idle runs its first moments slow: on this VM a demo model measured 0.34 ms for its first 9 pairs
# (~0.25 s) and 0.289 ms after, which failed a 0.336 ms budget. Warm-up pairs go on until this much time has passed.
WARMUP_S = 2.0


@dataclass(frozen=True)
class CheckOptions:
    budget_ms: float | None = None
    baseline: Path | None = None
    tolerance: float = 0.05
    update_baseline: bool = False
    pairs: int = 20
    max_pairs: int = 40  # a baseline check whose interval straddles the tolerance measures more pairs, up to this
    confidence: float = 0.95
    interval: str = "bootstrap"
    settings: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    reference: ConvSpec = REFERENCE_SPEC  # for a new baseline; a stored baseline names its own
    cache_dir: Path = DEFAULT_CACHE_DIR

    def validate(self) -> None:
        if self.budget_ms is None and self.baseline is None:
            raise FgnasError("nothing to check: give --budget (e.g. 53ms), --baseline FILE, or both")
        if self.update_baseline and self.baseline is None:
            raise FgnasError("--update-baseline needs --baseline FILE to write")
        if self.budget_ms is not None and not (0 < self.budget_ms < math.inf):
            raise FgnasError(f"--budget must be positive and finite, e.g. 53ms; got {self.budget_ms:g} ms")
        if not 0 <= self.tolerance < 1:  # "--tolerance 5" almost surely means 5%, not 500%
            raise FgnasError(f"--tolerance must be between 0% and 100%, e.g. 5% or 0.05; got {self.tolerance:g}")
        if not math.isfinite(self.tolerance):
            raise FgnasError("--tolerance must be a finite percentage, e.g. 5%")
        if self.pairs < 2:
            raise FgnasError("--pairs must be at least 2: an interval needs repeated measurements")
        if not 0 < self.confidence < 1:
            raise FgnasError("--confidence must be between 0 and 1, e.g. 0.95")


@dataclass(frozen=True)
class PairedRun:
    """Per-measurement medians (ms); reference_ms is empty when no reference was measured."""

    model_ms: tuple[float, ...]
    reference_ms: tuple[float, ...]
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """One verdict (a JUnit test case): `name` is budget or baseline."""

    name: str
    passed: bool
    message: str
    details: dict


@dataclass(frozen=True)
class CheckResult:
    model: Path
    device: dict
    run: PairedRun
    outcomes: tuple[Outcome, ...]
    baseline_written: Path | None = None
    notes: tuple[str, ...] = ()
    device_check: dict | None = None  # --table: profiler.latency.device_check's record of the table against this device

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict:
        return {
            "status": "pass" if self.passed else "fail", "exit_code": self.exit_code, "model": str(self.model),
            "device": self.device,
            "measurements": {"model_ms": list(self.run.model_ms), "reference_ms": list(self.run.reference_ms),
                             "seconds": self.run.seconds},
            "checks": [{"name": o.name, "passed": o.passed, "message": o.message, **o.details}
                       for o in self.outcomes],
            "baseline_written": str(self.baseline_written) if self.baseline_written else None,
            "notes": list(self.notes),
            "device_check": self.device_check,
        }


def require_tflite(model: Path) -> None:
    """FgnasError unless `model` carries the TFLite flatbuffer identifier: the runtime's own error on another file
    (an ONNX model, garbage) reads like a broken cached model, and this file is the user's, not a cache entry."""
    try:
        with open(model, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise FgnasError(f"cannot read model {model}: {exc.strerror}") from None
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise FgnasError(f"{model} is not a TFLite model (no TFL3 identifier): pass the .tflite file that fgnas-export "
                         f"or the TFLite converter wrote")


def measure_pairs(device: Device, model: Path, reference: Path | None, settings: BenchmarkSettings,
                  pairs: int, warmup_s: float = WARMUP_S) -> PairedRun:
    """`pairs` medians of the model (and of the reference, interleaved A B B A ...), after a discarded warm-up of at
    least WARMUP_PAIRS pairs and `warmup_s` seconds."""
    started = time.monotonic()
    device.prepare([model] + ([reference] if reference else []))
    order = [model, reference] if reference else [model]
    warm = 0
    while warm < WARMUP_PAIRS or time.monotonic() - started < warmup_s:
        for path in order if warm % 2 == 0 else reversed(order):
            device.benchmark(path, settings)
        warm += 1
    model_ms: list[float] = []
    reference_ms: list[float] = []
    for i in range(warm, warm + pairs):
        sinks = [(model, model_ms), (reference, reference_ms)] if reference else [(model, model_ms)]
        for path, out in sinks if i % 2 == 0 else reversed(sinks):
            out.append(device.benchmark(path, settings).median_ms)
    return PairedRun(tuple(model_ms), tuple(reference_ms), time.monotonic() - started)


def _ms(value: float) -> str:
    return f"{value:.4g} ms"


def budget_outcome(run: PairedRun, options: CheckOptions) -> Outcome:
    latency = latency_interval(run.model_ms, options.confidence, options.interval)
    passed = is_within_budget(latency, options.budget_ms)
    relation = "<=" if passed else ">"
    message = (f"latency {_ms(latency.estimate)} ({options.confidence:.0%} interval {_ms(latency.low)} to "
               f"{_ms(latency.high)}); upper end {relation} budget {_ms(options.budget_ms)}")
    return Outcome("budget", passed, message, {"budget_ms": options.budget_ms, "latency_ms": latency.to_dict()})


def _pct(value: float) -> str:
    return f"{value:+.1%}"


def _change(run: PairedRun, baseline: Baseline, options: CheckOptions) -> Interval:
    return change_interval(log_ratios(run.model_ms, run.reference_ms),
                           log_ratios(baseline.model_ms, baseline.reference_ms), options.confidence, options.interval)


def baseline_outcome(run: PairedRun, baseline: Baseline, options: CheckOptions) -> Outcome:
    ratio = ratio_interval(log_ratios(run.model_ms, run.reference_ms), options.confidence, options.interval)
    change = _change(run, baseline, options)
    regressed = is_regression(change, options.tolerance)
    verdict = (f"slower than the {options.tolerance:.0%} tolerance" if regressed
               else f"not shown slower than the {options.tolerance:.0%} tolerance")
    message = (f"model/reference ratio {ratio.estimate:.4g} vs baseline {baseline.ratio['estimate']:.4g}: change "
               f"{_pct(change.estimate)} ({options.confidence:.0%} interval {_pct(change.low)} to "
               f"{_pct(change.high)}), {verdict}")
    return Outcome("baseline", not regressed, message, {
        "tolerance": options.tolerance, "ratio": ratio.to_dict(), "baseline_ratio": baseline.ratio,
        "change": change.to_dict(), "pairs": len(run.model_ms), "baseline_pairs": len(baseline.model_ms)})


def make_baseline(model: Path, reference_spec: ConvSpec, reference: Path, device_info: dict, run: PairedRun,
                  options: CheckOptions) -> Baseline:
    ratio = ratio_interval(log_ratios(run.model_ms, run.reference_ms), options.confidence,
                                     options.interval)
    return Baseline(model_sha256=file_sha256(model), model_name=Path(model).name, reference_spec=reference_spec,
                    reference_sha256=file_sha256(reference), device=device_info,
                    settings={**options.settings.to_dict(), "pairs": options.pairs}, model_ms=run.model_ms,
                    reference_ms=run.reference_ms, ratio=ratio.to_dict())


def run_check(device: Device, model: Path, options: CheckOptions) -> CheckResult:
    """Measure and decide. Raises FgnasError for bad input (before measuring when it can) and DeviceFault."""
    options.validate()
    model = Path(model)
    if not model.is_file():
        raise FgnasError(f"model {model} does not exist: export it first (or check the path)")
    require_tflite(model)
    info = device.info()
    current_fingerprint = fingerprint(info, options.settings.to_dict())
    baseline = None
    notes: list[str] = []
    if options.baseline is not None and not options.update_baseline:
        baseline = load_baseline(options.baseline)
        require_same_device(baseline, options.baseline, current_fingerprint)
    reference_spec = baseline.reference_spec if baseline else options.reference
    reference = reference_model(reference_spec, options.cache_dir) if options.baseline is not None else None
    if baseline is not None:
        if file_sha256(reference) != baseline.reference_sha256:
            notes.append("the reference model's bytes differ from the baseline's (another TensorFlow converter?); "
                         "its network is the same, but re-record the baseline if the ratio moved")
        if file_sha256(model) == baseline.model_sha256:
            notes.append("the model is byte-identical to the baseline's")
    run = measure_pairs(device, model, reference, options.settings, options.pairs)
    if baseline is not None and options.max_pairs > options.pairs \
            and is_undecided(_change(run, baseline, options), options.tolerance):
        more = measure_pairs(device, model, reference, options.settings, options.max_pairs - options.pairs)
        run = PairedRun(run.model_ms + more.model_ms, run.reference_ms + more.reference_ms, run.seconds + more.seconds)
        notes.append(f"the first {options.pairs} pairs could not tell the change from the tolerance: measured "
                     f"{len(run.model_ms)}")
    outcomes = []
    if options.budget_ms is not None:
        outcomes.append(budget_outcome(run, options))
    if baseline is not None:
        outcomes.append(baseline_outcome(run, baseline, options))
    written = None
    if options.update_baseline:
        save_baseline(make_baseline(model, reference_spec, reference, info, run, options), options.baseline)
        written = options.baseline
    return CheckResult(model, info, run, tuple(outcomes), written, tuple(notes))
