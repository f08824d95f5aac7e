"""The sweep runner: measure every probe once a pass (a calibration network several times) on a farm of devices,
appending each result to the raw log.

One shared queue of probes in a seeded shuffled order (so slow drift spreads over all conditions instead of biasing
the ones measured last), pass after pass: a probe's second measurement comes a whole pass (and at least
`pass_gap_s`) after its first, so a burst of interference (another process, a VM's noisy neighbour) rarely hits
both, and the table keeps the lowest of them (see profiler.latency.table); one thread per device pulls a batch, builds
its models, lets the device `prepare` them (a phone pushes them) and measures them one by one. A device that raises
DeviceFault leaves the farm and its unmeasured probes go back to the queue; only when every device has failed does
the sweep raise DeviceFault. Measurements already in the log (measurements_of) are skipped, which makes re-running
the same command a resume, on the same devices with the same settings only (rawlog.check_resume).
"""
from __future__ import annotations

import collections
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from profiler.errors import DeviceFault
from profiler.measure.devices.base import BenchmarkSettings, Device, Measurement
from profiler.measure.model_builder import DEFAULT_CACHE_DIR, build_model
from profiler.measure.networks import NetProbe
from profiler.measure.rawlog import RECORD_VERSION, RawLog, check_resume, read_records
from profiler.ops import OpProbe
from profiler.spec import ConvSpec

Probe = ConvSpec | OpProbe | NetProbe
_KINDS: dict[type, str] = {ConvSpec: "conv", OpProbe: "op", NetProbe: "net"}
_FROM_DICT = {"conv": ConvSpec.from_dict, "op": OpProbe.from_dict, "net": NetProbe.from_dict}

MAX_SPREAD = 0.10  # std / median above which a measurement is repeated (sub-0.1 ms ops sit at 3-8%)
MAX_ATTEMPTS = 3
DRIFT_BOUND = 0.10  # relative change of the reference probe's latency that flags a table as drifted
REFERENCE_EVERY = 50
# Measured here: re-timing 60 swept convs, one median against another agreed within +-10% for 40-98% of them,
# depending on the minute; the lowest of three interleaved medians against another such lowest for 98-100%
# (benchmarks/measurement_noise.py). Two passes halve a sweep's exposure to such a minute at twice its time.
PASSES = 2
# A shared machine has slow spells of a minute or more: a probe's passes at least this far apart rarely all fall into
# one (a long sweep's passes are far longer than this anyway; a resumed one with few probes left would otherwise
# take them back to back).
PASS_GAP_S = 60.0
# Calibration networks are few and cheap, and the most sensitive of all probes to a slow spell (their activations
# are megabytes; here a MobileNetV2-224's median ranged over +-15% in ten passes a minute apart, and the lowest of
# those ten, taken in three bursts within an hour, was still 4-10% above a quieter hour's): each gets at least this
# many measurements.
NETWORK_MEASUREMENTS = 20  # spread over the sweep's passes (pending_by_pass)


def probe_kind(probe: Probe) -> str:
    return _KINDS[type(probe)]


def probe_from_record(record: dict) -> Probe:
    return _FROM_DICT[record["kind"]](record["spec"])


def device_identity(device: Device) -> dict:
    """What a raw-log record says about the device: profile name, serial, and the hardware model (a phone's
    ro.product.model, the host's CPU), so that a log is never resumed on another phone or machine."""
    info = device.info()
    return {"device": device.name, "serial": getattr(device, "serial", None),
            "hardware": info.get("model") or info.get("cpu_model") or None}


def measurement_settings(settings: BenchmarkSettings) -> dict:
    """The settings that change what a measurement means (not the timeout)."""
    return {"threads": settings.threads, "runs": settings.runs, "warmup": settings.warmup,
            "use_xnnpack": settings.use_xnnpack}


def make_record(kind: str, probe: Probe, m: Measurement, device: Device, attempts: int, model: Path | None = None,
                settings: BenchmarkSettings | None = None, identity: dict | None = None) -> dict:
    """The raw-log record of one measurement; a network's lists the ops read from its `model` file, so the table
    can price them without the model (or TensorFlow) at hand. `identity` (device_identity, asked once per sweep)
    and `settings` make the record say what it was measured on and how."""
    identity = identity or {"device": device.name, "serial": getattr(device, "serial", None), "hardware": None}
    record = {"v": RECORD_VERSION, "kind": kind, "id": probe.config_hash(), "spec": probe.to_dict(),
              "m": m.to_dict(), **identity, "t": time.time(), "attempts": attempts}
    if settings is not None:
        record["settings"] = measurement_settings(settings)
    if isinstance(probe, OpProbe):
        record["unit"], record["units"] = probe.units
    if isinstance(probe, NetProbe):
        from profiler.latency.tflite_reader import read_ops

        record["ops"] = [op.to_dict() for op in read_ops(model)]
    return record


@dataclass(frozen=True)
class SweepOptions:
    seed: int = 0
    batch_size: int = 16
    max_spread: float = MAX_SPREAD
    max_attempts: int = MAX_ATTEMPTS
    reference: ConvSpec | None = None  # measured first and every `reference_every` probes to detect drift
    reference_every: int = REFERENCE_EVERY
    cache_dir: Path = DEFAULT_CACHE_DIR
    progress: bool = True
    passes: int = PASSES  # measurements of every probe, each in its own pass over the whole shuffled sweep
    pass_gap_s: float = PASS_GAP_S  # least time from one pass's start to the next's


@dataclass(frozen=True)
class SweepResult:
    measured: int
    skipped: int
    remeasured: int
    failed_devices: tuple[str, ...] = ()
    drift: dict = field(default_factory=dict)


def measurements_of(probe: Probe, passes: int) -> int:
    """How many times a sweep of `passes` measures `probe`: once a pass (networks: at least NETWORK_MEASUREMENTS)."""
    return max(passes, NETWORK_MEASUREMENTS) if isinstance(probe, NetProbe) else passes


def pending_by_pass(probes: list[Probe], log_path: Path, seed: int = 0, passes: int = 1) -> list[list[Probe]]:
    """The measurements not yet in the log, per pass, each pass in its own shuffled order. A probe's
    measurements_of(probe, passes) are spread evenly over the `passes` passes (a calibration network gets several in
    each, shuffled among the other probes, so its lowest median sees as many states of the machine as theirs, and a
    sweep takes no extra passes for it); one the log holds k times needs its measurements k+1 .. measurements_of."""
    done = collections.Counter(r["id"] for r in read_records(log_path) if r["kind"] != "reference")
    todo: list[list[Probe]] = [[] for _ in range(passes)]
    for probe in dict.fromkeys(probes):
        total = measurements_of(probe, passes)
        for i in range(done[probe.config_hash()], total):
            todo[i * passes // total].append(probe)
    for k, this_pass in enumerate(todo):
        random.Random(seed + k).shuffle(this_pass)
    return todo


def measure_stable(device: Device, model_path: Path, settings: BenchmarkSettings, max_spread: float,
                   max_attempts: int) -> tuple[Measurement, int]:
    """Measure until the spread is within bound (at most max_attempts times); keep the most stable measurement."""
    best = device.benchmark(model_path, settings)
    attempts = 1
    while best.spread > max_spread and attempts < max_attempts:
        again = device.benchmark(model_path, settings)
        attempts += 1
        if again.spread < best.spread:
            best = again
    return best, attempts


def run_sweep(probes: list[Probe], devices: list[Device], log: RawLog, settings: BenchmarkSettings,
              options: SweepOptions = SweepOptions()) -> SweepResult:
    """Take every measurement not yet in `log` on the devices; raise DeviceFault only when all of them failed."""
    if options.passes < 1:
        raise ValueError("a sweep needs at least one pass")
    identities = {id(d): device_identity(d) for d in devices}
    check_resume(read_records(log.path), log.path, list(identities.values()), measurement_settings(settings))
    by_pass = [todo for todo in pending_by_pass(probes, log.path, options.seed, options.passes) if todo]
    skipped = sum(measurements_of(p, options.passes) for p in set(probes)) - sum(map(len, by_pass))
    measured = remeasured = 0
    failed: list[str] = []
    started = None
    for k, todo in enumerate(by_pass):
        if started is not None:
            time.sleep(max(0.0, options.pass_gap_s - (time.monotonic() - started)))
        started = time.monotonic()
        working = [d for d in devices if _device_label(d) not in failed]
        farm = _Farm(todo, working, log, settings, options, f"profiling pass {k + 1}/{len(by_pass)}", identities)
        try:
            farm.run()
        finally:
            measured += farm.measured
            remeasured += farm.remeasured
            failed += farm.failed
    return SweepResult(measured=measured, skipped=skipped, remeasured=remeasured, failed_devices=tuple(failed),
                       drift=drift_summary(read_records(log.path)))


def _device_label(device: Device) -> str:
    serial = getattr(device, "serial", None)
    return f"{device.name}:{serial}" if serial else device.name


class _Farm:
    """The shared queue and the device threads; all mutable sweep state lives here, guarded by one lock."""

    _build_lock = threading.Lock()  # the TF converter is not safe to run from several threads at once

    def __init__(self, todo: list[Probe], devices: list[Device], log: RawLog, settings: BenchmarkSettings,
                 options: SweepOptions, desc: str = "profiling", identities: dict[int, dict] | None = None) -> None:
        self.queue = collections.deque(todo)
        self.identities = identities or {}
        self.devices = devices
        self.log = log
        self.settings = settings
        self.options = options
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.busy = 0  # devices measuring a batch right now
        self.measured = 0
        self.remeasured = 0
        self.failed: list[str] = []
        self.faults: list[str] = []
        self.error: BaseException | None = None
        self.since_reference = options.reference_every if options.reference is not None else 0
        self.bar = None
        if options.progress and todo:
            from tqdm import tqdm

            self.bar = tqdm(total=len(todo), unit="measurement", desc=desc, dynamic_ncols=True)

    def run(self) -> None:
        if not self.queue:
            self._close_bar()
            return
        threads = [threading.Thread(target=self._serve, args=(d,), daemon=True) for d in self.devices]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.2)  # short joins keep the main thread responsive to Ctrl-C
        except BaseException:
            self.stop.set()
            for thread in threads:
                thread.join()
            raise
        finally:
            self._close_bar()
        if self.error is not None:
            raise self.error
        if self.queue:
            raise DeviceFault(f"every device failed with {len(self.queue)} probes left: {'; '.join(self.faults)}")

    def _serve(self, device: Device) -> None:
        try:
            while not self.stop.is_set():
                batch = self._take_batch()
                if batch is None:
                    return
                if not batch:
                    time.sleep(0.05)  # another device may still fail and give its probes back
                    continue
                try:
                    self._measure_batch(device, batch)
                finally:
                    with self.lock:
                        self.busy -= 1
        except DeviceFault as exc:
            with self.lock:
                self.failed.append(_device_label(device))
                self.faults.append(f"{_device_label(device)}: {exc}")
        except BaseException as exc:  # a bad model or a bug: stop the whole farm and re-raise in the main thread
            with self.lock:
                self.error = self.error or exc
            self.stop.set()

    def _take_batch(self) -> list[Probe] | None:
        """Up to batch_size probes; [] to wait while the queue is empty but others are busy; None when all is done."""
        with self.lock:
            if not self.queue:
                return None if self.busy == 0 else []
            self.busy += 1
            return [self.queue.popleft() for _ in range(min(self.options.batch_size, len(self.queue)))]

    def _measure_batch(self, device: Device, batch: list[Probe]) -> None:
        reference = self.options.reference
        with self._build_lock:
            paths = [build_model(p, self.options.cache_dir) for p in batch]
            reference_path = build_model(reference, self.options.cache_dir) if reference is not None else None
        try:
            device.prepare(paths + ([reference_path] if reference_path is not None else []))
        except DeviceFault:
            self._give_back(batch)
            raise
        for i, (probe, path) in enumerate(zip(batch, paths)):
            if self.stop.is_set():
                self._give_back(batch[i:])
                return
            try:
                if reference is not None and self._reference_due():
                    self._measure_one(device, "reference", reference, reference_path)
                self._measure_one(device, probe_kind(probe), probe, path)
            except DeviceFault:
                self._give_back(batch[i:])
                raise
            with self.lock:
                self.measured += 1
                if self.bar is not None:
                    self.bar.update(1)

    def _measure_one(self, device: Device, kind: str, probe: Probe, path: Path) -> None:
        m, attempts = measure_stable(device, path, self.settings, self.options.max_spread, self.options.max_attempts)
        self.log.append(make_record(kind, probe, m, device, attempts, path, self.settings,
                                    self.identities.get(id(device))))
        if attempts > 1:
            with self.lock:
                self.remeasured += 1

    def _reference_due(self) -> bool:
        with self.lock:
            due = self.since_reference >= self.options.reference_every
            self.since_reference = 1 if due else self.since_reference + 1
            return due

    def _give_back(self, probes: list[Probe]) -> None:
        with self.lock:
            self.queue.extendleft(reversed(probes))

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def drift_summary(records: list[dict], bound: float = DRIFT_BOUND) -> dict:
    """How far the reference probe's latency moved during the sweep, per device (name:serial).

    Drift of one device = max |median_ms / median of its reference medians - 1|. The table carries `drifted`
    (true when any device exceeds `bound`) and this whole dict. Fields: reference_id, bound, max_drift, drifted,
    devices: {label: {n, median_ms, min_ms, max_ms, drift}}.
    """
    by_device: dict[str, list[float]] = collections.defaultdict(list)
    reference_id = None
    for r in records:
        if r["kind"] == "reference":
            reference_id = r["id"]
            label = f"{r['device']}:{r['serial']}" if r.get("serial") else r["device"]
            by_device[label].append(r["m"]["median_ms"])
    devices = {}
    for label, values in by_device.items():
        center = statistics.median(values)
        drift = max(abs(v / center - 1) for v in values) if center > 0 else 0.0
        devices[label] = {"n": len(values), "median_ms": center, "min_ms": min(values), "max_ms": max(values),
                          "drift": drift}
    max_drift = max((d["drift"] for d in devices.values()), default=0.0)
    return {"reference_id": reference_id, "bound": bound, "max_drift": max_drift, "drifted": max_drift > bound,
            "devices": devices}
