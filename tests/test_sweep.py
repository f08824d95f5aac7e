import collections
from pathlib import Path

import pytest

from profiler.errors import DeviceFault
from profiler.measure.devices import create_device
from profiler.measure.devices.base import BenchmarkSettings, Device, Measurement
from profiler.measure.model_builder import build_model
from profiler.measure.rawlog import RECORD_VERSION, RawLog, read_records
from profiler.measure.spaces import SMALL_MAX, Resolution, Space
from profiler.measure.sweep import (
    SweepOptions,
    drift_summary,
    measure_stable,
    pending_by_pass,
    probe_from_record,
    run_sweep,
)
from profiler.ops import OpProbe
from profiler.spec import ConvSpec

SETTINGS = BenchmarkSettings(runs=3, warmup=1, timeout_s=30)
PROBES = [ConvSpec(4, 4, c, c + 1, k, 1, 1, "relu") for c in (4, 8, 12) for k in (1, 3)] + [
    ConvSpec.depthwise(4, 4, 8, 3), OpProbe.for_feature_map("ADD", 4, 4, 8)]


def _options(model_cache, **kw) -> SweepOptions:
    """One pass unless a test asks for more: most tests are about the farm, the log and resuming, not passes (nor
    the gap between them)."""
    return SweepOptions(cache_dir=model_cache, progress=False, **{"passes": 1, "pass_gap_s": 0.0, **kw})


class FlakyHost(Device):
    """The real host device that stops working after `good` benchmarks, as an unplugged phone would."""

    def __init__(self, good: int, serial: str) -> None:
        self.inner = create_device("host")
        self.name = "host"
        self.serial = serial
        self.good = good
        self.prepared: list[list[Path]] = []

    def info(self) -> dict:
        return self.inner.info()

    def prepare(self, model_paths: list[Path]) -> None:
        if self.good <= 0:
            raise DeviceFault(f"{self.serial} unplugged while pushing models")
        self.prepared.append(list(model_paths))

    def benchmark(self, model_path: Path, settings: BenchmarkSettings) -> Measurement:
        if self.good <= 0:
            raise DeviceFault(f"{self.serial} unplugged")
        self.good -= 1
        return self.inner.benchmark(model_path, settings)

    def close(self) -> None:
        self.inner.close()


class ScriptedSpreads(Device):
    """Returns measurements with the given spreads in turn (for the stability guard's policy alone)."""

    name = "scripted"

    def __init__(self, spreads: list[float]) -> None:
        self.spreads = collections.deque(spreads)

    def info(self) -> dict:
        return {"name": self.name}

    def benchmark(self, model_path: Path, settings: BenchmarkSettings) -> Measurement:
        s = self.spreads.popleft()
        return Measurement(1.0, 1.0, s, 0.9, 3, 1, 0.0, 0.0)


def test_every_probe_is_measured_once_with_its_device_and_spec(tmp_path, model_cache):
    with create_device("host") as host, RawLog(tmp_path / "t.raw.jsonl") as log:
        result = run_sweep(PROBES, [host], log, SETTINGS, _options(model_cache))
    records = read_records(tmp_path / "t.raw.jsonl")
    assert result.measured == len(PROBES) and result.skipped == 0
    assert sorted(r["id"] for r in records) == sorted(p.config_hash() for p in PROBES)
    assert {probe_from_record(r) for r in records} == set(PROBES)
    op = next(r for r in records if r["kind"] == "op")
    assert (op["unit"], op["units"]) == ("output_elements", 128)
    assert all(r["device"] == "host" and r["serial"] is None and r["m"]["count"] == 3 for r in records)


def test_rerun_resumes_and_measures_nothing_already_logged(tmp_path, model_cache):
    path = tmp_path / "t.raw.jsonl"
    with create_device("host") as host:
        with RawLog(path) as log:
            run_sweep(PROBES[:4], [host], log, SETTINGS, _options(model_cache))
        with RawLog(path) as log:
            result = run_sweep(PROBES, [host], log, SETTINGS, _options(model_cache))
        assert (result.measured, result.skipped) == (len(PROBES) - 4, 4)
        with RawLog(path) as log:
            again = run_sweep(PROBES, [host], log, SETTINGS, _options(model_cache))
    assert (again.measured, again.skipped) == (0, len(PROBES))
    assert len(read_records(path)) == len(PROBES)


def test_every_probe_is_measured_once_per_pass_and_a_rerun_completes_the_missing_passes(tmp_path, model_cache):
    path = tmp_path / "t.raw.jsonl"
    with create_device("host") as host:
        with RawLog(path) as log:
            first = run_sweep(PROBES[:4], [host], log, SETTINGS, _options(model_cache, passes=2))
        with RawLog(path) as log:
            more = run_sweep(PROBES, [host], log, SETTINGS, _options(model_cache, passes=3))
    assert (first.measured, first.skipped) == (8, 0)
    assert (more.measured, more.skipped) == (3 * len(PROBES) - 8, 8)
    assert collections.Counter(r["id"] for r in read_records(path)) == {p.config_hash(): 3 for p in PROBES}


def test_a_pass_starts_at_least_the_pass_gap_after_the_one_before(tmp_path, model_cache):
    path = tmp_path / "t.raw.jsonl"
    for probe in PROBES[:2]:
        build_model(probe, model_cache)  # so that the first pass does not spend the gap converting
    with create_device("host") as host:
        for gap in (0.0, 2.0):
            with RawLog(path) as log:
                run_sweep(PROBES[:2], [host], log, SETTINGS, _options(model_cache, passes=2, pass_gap_s=gap))
            times = [r["m"]["started_at"] for r in read_records(path)]
            path.unlink()
            # a pass's clock starts before its first measurement (the runtime worker starts first): some slack
            assert len(times) == 4 and (times[2] - times[0] >= 1.6 if gap else times[2] - times[0] < 1.0)


def test_calibration_networks_get_network_passes_measurements_spread_over_the_passes(tmp_path):
    import random

    from profiler.measure.networks import vgg_net
    from profiler.measure.sweep import NETWORK_MEASUREMENTS

    net = vgg_net(random.Random(0), 32)
    by_pass = pending_by_pass([*PROBES[:3], net], tmp_path / "none.raw.jsonl", passes=2)
    assert [len(p) for p in by_pass] == [3 + NETWORK_MEASUREMENTS // 2] * 2
    assert [p.count(net) for p in by_pass] == [NETWORK_MEASUREMENTS // 2] * 2
    assert by_pass[0][0] != net or by_pass[0][-1] != net  # shuffled among the convs, not a burst at one end
    log = tmp_path / "some.raw.jsonl"
    with RawLog(log) as raw:  # a resumed sweep: the net measured 3 times, the convs once
        for probe in [*PROBES[:3], *[net] * 3]:
            raw.append({"v": RECORD_VERSION, "kind": "net" if probe is net else "conv", "id": probe.config_hash(),
                        "spec": probe.to_dict(), "m": {}, "device": "host"})
    resumed = pending_by_pass([*PROBES[:3], net], log, passes=2)
    assert [len(p) for p in resumed] == [NETWORK_MEASUREMENTS // 2 - 3, 3 + NETWORK_MEASUREMENTS // 2]


def test_passes_come_one_after_another_each_in_its_own_order(tmp_path):
    probes = [ConvSpec(4, 4, c, c, 1) for c in range(1, 40)]
    first, second = pending_by_pass(probes, tmp_path / "none.raw.jsonl", seed=3, passes=2)
    assert sorted(first, key=lambda p: p.cin) == probes == sorted(second, key=lambda p: p.cin)
    assert first != second


def test_order_is_shuffled_reproducibly_by_seed(tmp_path):
    probes = [ConvSpec(4, 4, c, c, 1) for c in range(1, 40)]
    [order] = pending_by_pass(probes, tmp_path / "none.raw.jsonl", seed=3)
    assert [order] == pending_by_pass(probes, tmp_path / "none.raw.jsonl", seed=3)
    assert order != probes and sorted(order, key=lambda p: p.cin) == probes
    assert [order] != pending_by_pass(probes, tmp_path / "none.raw.jsonl", seed=4)


def test_farm_moves_a_failing_devices_probes_to_the_others(tmp_path, model_cache):
    flaky, good = FlakyHost(good=2, serial="phone-a"), FlakyHost(good=10**6, serial="phone-b")
    try:
        with RawLog(tmp_path / "t.raw.jsonl") as log:
            result = run_sweep(PROBES, [flaky, good], log, SETTINGS, _options(model_cache, batch_size=3))
    finally:
        flaky.close()
        good.close()
    records = read_records(tmp_path / "t.raw.jsonl")
    assert result.failed_devices == ("host:phone-a",)
    assert sorted(r["id"] for r in records) == sorted(p.config_hash() for p in PROBES)
    by_serial = collections.Counter(r["serial"] for r in records)
    assert by_serial["phone-a"] <= 2 and by_serial["phone-a"] + by_serial["phone-b"] == len(PROBES)
    assert all(len(batch) <= 3 for batch in good.prepared) and good.prepared


def test_a_device_failing_while_preparing_a_batch_gives_the_whole_batch_back(tmp_path, model_cache):
    flaky, good = FlakyHost(good=0, serial="phone-a"), FlakyHost(good=10**6, serial="phone-b")
    try:
        with RawLog(tmp_path / "t.raw.jsonl") as log:
            result = run_sweep(PROBES, [flaky, good], log, SETTINGS, _options(model_cache, batch_size=4))
    finally:
        flaky.close()
        good.close()
    assert result.failed_devices == ("host:phone-a",) and not flaky.prepared
    assert sorted(r["id"] for r in read_records(tmp_path / "t.raw.jsonl")) == sorted(p.config_hash() for p in PROBES)


def test_all_devices_failing_is_a_device_fault_that_keeps_the_measurements(tmp_path, model_cache):
    path = tmp_path / "t.raw.jsonl"
    flaky = FlakyHost(good=3, serial="only")
    try:
        with RawLog(path) as log, pytest.raises(DeviceFault, match="every device failed with 5 probes left"):
            run_sweep(PROBES, [flaky], log, SETTINGS, _options(model_cache, max_attempts=1))
    finally:
        flaky.close()
    assert len(read_records(path)) == 3
    again = FlakyHost(good=10**6, serial="only")  # the same phone, plugged back in (another one is refused)
    try:
        with RawLog(path) as log:
            assert run_sweep(PROBES, [again], log, SETTINGS, _options(model_cache)).measured == len(PROBES) - 3
    finally:
        again.close()


def test_reference_probe_is_measured_first_and_every_n_probes(tmp_path, model_cache):
    reference = ConvSpec(8, 8, 8, 8, 3, 1, 1, "relu")
    with create_device("host") as host, RawLog(tmp_path / "t.raw.jsonl") as log:
        result = run_sweep(PROBES, [host], log, SETTINGS, _options(model_cache, reference=reference, reference_every=3))
    kinds = [r["kind"] for r in read_records(tmp_path / "t.raw.jsonl")]
    assert kinds[0] == "reference" and kinds.count("reference") == 3  # before probes 1, 4 and 7 of 8
    assert result.drift["reference_id"] == reference.config_hash() and result.drift["devices"]["host"]["n"] == 3


def test_stability_guard_remeasures_and_keeps_the_most_stable():
    m, attempts = measure_stable(ScriptedSpreads([0.3, 0.05, 0.2]), Path("x"), SETTINGS, 0.1, 3)
    assert (m.std_ms, attempts) == (0.05, 2)
    m, attempts = measure_stable(ScriptedSpreads([0.3, 0.2, 0.4]), Path("x"), SETTINGS, 0.1, 3)
    assert (m.std_ms, attempts) == (0.2, 3)
    assert measure_stable(ScriptedSpreads([0.01]), Path("x"), SETTINGS, 0.1, 3)[1] == 1


def _ref(ms: float, serial=None) -> dict:
    return {"kind": "reference", "id": "r", "device": "pixel1", "serial": serial, "m": {"median_ms": ms}}


def test_drift_summary_against_hand_computed_values():
    # values 1.0, 1.0, 1.2 -> median 1.0, drift 0.2; another phone steady at 2.0
    records = [_ref(1.0, "a"), _ref(1.2, "a"), _ref(1.0, "a"), _ref(2.0, "b"), _ref(2.0, "b"),
               {"kind": "conv", "id": "c", "device": "pixel1", "serial": "a", "m": {"median_ms": 9.0}}]
    summary = drift_summary(records, bound=0.1)
    assert summary["devices"]["pixel1:a"]["drift"] == pytest.approx(0.2)
    assert summary["devices"]["pixel1:b"]["drift"] == 0.0
    assert summary["max_drift"] == pytest.approx(0.2) and summary["drifted"] is True
    assert drift_summary(records, bound=0.25)["drifted"] is False
    assert drift_summary([])["drifted"] is False


def test_space_covers_conditions_with_aligned_and_misaligned_channels():
    space = Space("t", (Resolution(8, 16, 256),), kernels=(3,), strides=(1,), conv_types=("normal",),
                  activations=("relu",), samples_per_condition=8, ops=(), small_samples=0)
    couts = [p.cout for p in space.conv_probes()]
    assert len(couts) == 8 and min(couts) < 48 and max(couts) > 128
    assert any(c % 8 == 0 for c in couts) and any(c % 8 for c in couts)


def test_small_channel_probes_are_added_without_changing_the_others():
    plain = Space("t", (Resolution(8, 32, 256),), kernels=(1, 3), strides=(1,), conv_types=("normal", "depthwise"),
                  activations=("relu",), samples_per_condition=6, ops=(), small_samples=0)
    with_small = plain.with_overrides(small_samples=2)
    added = [p for p in with_small.conv_probes() if p not in plain.conv_probes()]
    assert plain.conv_probes() == with_small.conv_probes()[:len(plain.conv_probes())]
    normal = [c for c in plain.conditions() if c[3] == "normal"]
    assert len(added) == 2 * len(plain.conditions()) + 2 * len(normal)
    few_out = [p for p in added if p.cout <= SMALL_MAX and (p.conv_type == "depthwise" or p.cin >= 32)]
    few_in = [p for p in added if p.cin <= SMALL_MAX and p.conv_type == "normal"]
    assert len(few_out) == 2 * len(plain.conditions()) and len(few_in) == 2 * len(normal)
    for key in {p.condition for p in few_out}:
        couts = sorted(p.cout for p in few_out if p.condition == key)
        assert couts[0] <= 4 <= couts[1] and couts[0] < couts[1]  # one per log stratum of 1..16


def test_every_probe_of_a_depthwise_only_space_is_a_depthwise_conv():
    # a one-channel depthwise conv is a normal 1->1 conv: drawn as one, it became the only probe of a normal condition
    # nobody swept, and the table fitted that condition's line through it
    space = Space("t", (Resolution(8, 8, 64), Resolution(16, 8, 64)), kernels=(1, 3, 5), strides=(1, 2),
                  conv_types=("depthwise",), activations=("prelu", "tanh"), samples_per_condition=2, ops=(),
                  small_samples=4)
    kinds = collections.Counter(p.conv_type for seed in range(3) for p in space.conv_probes(seed))
    assert set(kinds) == {"depthwise"}


def test_copy_ops_get_small_channel_probes_and_other_ops_do_not():
    from profiler.measure.spaces import get_space

    probes = get_space("quick").op_probes()
    for op in ("SPLIT_V", "CONCATENATION", "STRIDED_SLICE", "PAD"):
        channels = [p.input_shapes[0][-1] for p in probes if p.op == op]
        assert len(channels) == get_space("quick").op_samples + 4 and sum(c <= SMALL_MAX for c in channels) >= 4
    assert sum(p.op == "RELU" for p in probes) == get_space("quick").op_samples


def test_a_space_that_measures_ops_measures_the_invoke_probe_once():
    from profiler.measure.spaces import get_space
    from profiler.ops import INVOKE_PROBE

    assert get_space("quick").op_probes().count(INVOKE_PROBE) == 1
    assert get_space("quick").with_overrides(ops=()).op_probes() == []


def test_quick_space_covers_the_demo_networks_conditions_and_ops():
    from profiler.measure.spaces import get_space
    from profiler.ops import PRICED_OPS
    from profiler.spec import ConditionKey

    space = get_space("quick")
    measured = {p.condition for p in space.conv_probes()}
    for hw in (32, 16, 8, 4):
        for kernel in (1, 3, 5):
            for stride in (1, 2):
                for conv_type in ("normal", "depthwise"):
                    assert ConditionKey(hw, hw, kernel, stride, conv_type, "relu") in measured
    assert {p.op for p in space.op_probes()} == set(PRICED_OPS)


def test_imagenet_stem_is_a_normal_conv_on_the_rgb_image_only():
    from profiler.measure.spaces import get_space

    stem = [p for p in get_space("imagenet").conv_probes() if p.h == 224]
    assert stem and all(p.cin == 3 and p.conv_type == "normal" for p in stem)
