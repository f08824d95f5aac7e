import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import LeaveOneOut

from profiler.cost import conv_weights, megabytes
from profiler.latency.fit import (
    MIN_NETWORKS,
    NO_KNEE,
    ConditionModel,
    NetworkModel,
    NetworkSample,
    WeightKnee,
    detect_shared_tiles,
    detect_tiles,
    fit_condition,
    fit_conditions,
    fit_line,
    fit_network,
    fit_op,
    loo_predictions,
    mape,
    nonneg_line,
    tiled_mflops,
)
from profiler.spec import ConvSpec, flops


def conv_weights_mb(spec: ConvSpec) -> float:
    return megabytes(conv_weights(spec))


def test_tiled_mflops_is_twice_the_tiled_macs_in_millions():
    spec = ConvSpec.depthwise(8, 8, 20, 3, stride=2)
    # 4*4 output pixels * channels 32 * 1 * 3*3; the cin tile does not apply
    assert tiled_mflops(spec, 16, 8) == pytest.approx(2 * 4608 / 1e6)
    assert tiled_mflops(ConvSpec(8, 8, 10, 33, 3)) == pytest.approx(flops(ConvSpec(8, 8, 10, 33, 3)) / 1e6)


def test_fit_line_recovers_an_exact_line():
    x = np.array([1.0, 2.0, 5.0, 9.0])
    fit = fit_line(x, 2 * x + 1, relative=False)
    assert fit.a == pytest.approx(2) and fit.b == pytest.approx(1)
    assert fit.mape == pytest.approx(0, abs=1e-12) and fit.cv_mape == pytest.approx(0, abs=1e-12)
    assert fit.r2 == pytest.approx(1) and fit.n == 4


def test_fit_line_hand_computed_least_squares():
    # x = 0,1,2; y = 1,2,4: slope = sum((x-1)(y-7/3)) / sum((x-1)^2) = 3/2, intercept = 7/3 - 3/2 = 5/6
    fit = fit_line(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 4.0]), relative=False)
    assert fit.a == pytest.approx(1.5) and fit.b == pytest.approx(5 / 6)
    # held out: drop x=0 -> line through (1,2),(2,4) predicts 0 (err 1/1); drop x=1 -> (0,1),(2,4) predicts 2.5
    # (err 0.5/2); drop x=2 -> (0,1),(1,2) predicts 3 (err 1/4)
    assert fit.cv_mape == pytest.approx((1 + 0.25 + 0.25) / 3)


def test_one_sample_gives_a_line_through_the_origin_without_cv():
    fit = fit_line(np.array([4.0]), np.array([2.0]), relative=True)
    assert (fit.a, fit.b, fit.cv_mape) == (0.5, 0.0, None)


@pytest.mark.parametrize("relative", [False, True])
def test_loo_equals_explicit_unconstrained_refits_when_the_line_is_interior(relative):
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 50, 12)
    y = 0.3 * x + 2 + rng.normal(0, 0.5, 12)
    w = 1 / y**2 if relative else np.ones_like(y)
    explicit = np.empty_like(y)
    for train, test in LeaveOneOut().split(x):
        model = LinearRegression().fit(x[train, None], y[train], sample_weight=w[train])
        explicit[test] = model.predict(x[test, None])
    assert loo_predictions(x, y, w) == pytest.approx(explicit, rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_leave_one_out_equals_constrained_refits(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 10, 9)
    y = np.abs(rng.choice([0.5, -0.3, 0.0]) * x + rng.choice([1.0, -2.0, 0.2]) + rng.normal(0, 0.5, 9)) + 0.01
    w = 1 / y**2
    keep = ~np.eye(len(x), dtype=bool)
    refits = [nonneg_line(x[k], y[k], w[k]) for k in keep]
    assert loo_predictions(x, y, w) == pytest.approx([a * xi + b for (a, b), xi in zip(refits, x)], rel=1e-9)


def test_leave_one_out_needs_two_distinct_x_without_each_sample():
    assert loo_predictions(np.array([1.0, 1.0, 2.0]), np.ones(3), np.ones(3)) is None
    assert loo_predictions(np.array([1.0, 1.0, 2.0, 2.0]), np.ones(4), np.ones(4)) is not None


def test_negative_intercept_is_constrained_to_a_line_through_the_origin():
    # y = 2x - 1 exactly; with b >= 0 the weighted-free optimum is b = 0, a = sum(xy)/sum(x^2) = (1+6+15)/14
    fit = fit_line(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 5.0]), relative=False)
    assert fit.b == 0.0 and fit.a == pytest.approx(22 / 14)


def test_negative_slope_is_constrained_to_a_constant():
    fit = fit_line(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]), relative=False)
    assert fit.a == 0.0 and fit.b == pytest.approx(2.0)


def test_constrained_fit_never_predicts_negative_latency_held_out():
    x = np.array([1.0, 2.0, 10.0, 20.0])
    y = np.array([0.01, 0.02, 0.5, 1.1])  # the small samples sit below the line an unconstrained fit would draw
    loo = loo_predictions(x, y, 1 / y**2)
    assert np.all(loo >= 0)


def _tiled_condition(cout_tile, cin_tile, channels, a=0.02, b=0.05, noise=0.01, depthwise=False, seed=1):
    rng = np.random.default_rng(seed)
    specs = [ConvSpec.depthwise(16, 16, c, 3) if depthwise else ConvSpec(16, 16, cin, c, 3, activation="relu")
             for c, cin in channels]
    ms = [(a * tiled_mflops(s, cout_tile, cin_tile) + b) * (1 + rng.uniform(-noise, noise)) for s in specs]
    return specs, ms


MISALIGNED = [(24, 20), (40, 33), (57, 64), (70, 48), (96, 100), (101, 17), (130, 90), (150, 40), (33, 130),
              (64, 64), (200, 72), (17, 9)]


def test_detects_an_output_channel_tile_of_32_and_beats_the_affine_fit():
    specs, ms = _tiled_condition(32, 1, MISALIGNED)
    model = fit_condition(specs[0].condition, specs, ms)
    assert (model.model, model.cout_tile, model.cin_tile) == ("tile", 32, 1)
    assert model.cv_mape < 0.02 < model.affine.cv_mape
    assert model.a_ms_per_mflop == pytest.approx(0.02, rel=0.03)


def test_detects_other_tiles_from_the_data_too():
    specs, ms = _tiled_condition(8, 4, MISALIGNED)
    assert detect_tiles(specs, np.array(ms))[:2] == (8, 4)


def test_depthwise_tile_is_detected_on_channels_only():
    channels = [(c, c) for c in (20, 24, 36, 40, 52, 64, 70, 90, 100, 120, 130, 150)]
    specs, ms = _tiled_condition(16, 1, channels, depthwise=True)
    model = fit_condition(specs[0].condition, specs, ms)
    assert (model.cout_tile, model.cin_tile) == (16, 1)


def test_untiled_data_keeps_tile_one():
    specs, ms = _tiled_condition(1, 1, MISALIGNED)
    model = fit_condition(specs[0].condition, specs, ms)
    assert (model.cout_tile, model.cin_tile) == (1, 1)


def test_condition_model_predicts_on_tiled_flops_and_round_trips():
    specs, ms = _tiled_condition(32, 1, MISALIGNED, noise=0.0)
    model = fit_condition(specs[0].condition, specs, ms)
    spec = ConvSpec(16, 16, 50, 33, 3, activation="relu")
    assert model.predict_ms(spec) == pytest.approx(0.02 * 2 * 16 * 16 * 64 * 50 * 9 / 1e6 + 0.05, rel=1e-6)
    assert ConditionModel.from_dict(model.to_dict()) == model


def test_fit_condition_refuses_mixed_conditions_and_bad_latencies():
    specs, ms = _tiled_condition(1, 1, MISALIGNED[:3])
    with pytest.raises(ValueError):
        fit_condition(specs[0].condition, specs + [ConvSpec(8, 8, 4, 4, 1)], ms + [1.0])
    with pytest.raises(ValueError):
        fit_condition(specs[0].condition, specs, [1.0, 0.0, 2.0])


def test_fit_op_is_affine_in_units():
    op = fit_op("ADD", "elements", [1000, 2000, 4000, 8000], [0.011, 0.021, 0.041, 0.081])
    assert op.a_ms_per_unit == pytest.approx(1e-5) and op.b_ms == pytest.approx(0.001)
    assert op.predict_ms(3000) == pytest.approx(0.031)
    assert op.mape == pytest.approx(0, abs=1e-9)


def test_mape_is_a_fraction():
    assert mape(np.array([1.1, 1.8]), np.array([1.0, 2.0])) == pytest.approx(0.1)


def test_tiles_are_detected_per_conv_type_across_conditions():
    samples = {}
    for hw, seed in ((32, 2), (16, 3), (8, 4)):
        rng = np.random.default_rng(seed)
        specs = [ConvSpec(hw, hw, cin, cout, 3, activation="relu") for cout, cin in MISALIGNED[:6]]
        ms = [(0.02 * tiled_mflops(s, 32, 1) + 0.05) * (1 + rng.uniform(-0.03, 0.03)) for s in specs]
        samples[specs[0].condition] = (specs, ms)
        dw = [ConvSpec.depthwise(hw, hw, c, 3) for c in (20, 30, 36, 60, 70, 100)]  # 30, 60: tile 8 != 16 - 8
        samples[dw[0].condition] = (dw, [0.001 * tiled_mflops(s, 16) + 0.01 for s in dw])
    assert detect_shared_tiles([(s, np.array(m)) for k, (s, m) in samples.items() if k.conv_type == "normal"]) \
        == (32, 1, 32, 1)
    models = fit_conditions(samples)
    assert [str(m.key) for m in models] == sorted(str(k) for k in samples)
    assert {(m.key.conv_type, m.cout_tile, m.cin_tile) for m in models} == {("normal", 32, 1), ("depthwise", 16, 1)}


def test_a_condition_uses_its_familys_tiles_and_its_own_only_where_the_family_shows_none():
    # a dozen samples of one condition can favour another tile than its family's by chance (here: the sweep's
    # 16x16 k11 condition chose 16 and priced cout 40 as 48, where the kernel computes 64); the family's evidence wins
    specs = [ConvSpec(8, 8, cin, cout, 3, activation="relu")
             for cout, cin in ((16, 70), (20, 40), (48, 90), (64, 50), (80, 60), (96, 100), (112, 20), (128, 33))]
    ms = [0.02 * tiled_mflops(s, 16, 1) + 0.05 for s in specs]
    assert fit_condition(specs[0].condition, specs, ms).cout_tile == 16  # alone: its own best
    assert fit_condition(specs[0].condition, specs, ms, shared_tiles=(32, 1, 32, 1)).cout_tile in (32, 1)
    assert fit_condition(specs[0].condition, specs, ms, shared_tiles=(1, 1, 1, 1)).cout_tile == 16


def _ladder_family(truth_small: int | None, with_small: bool = True):
    """Three conditions priced by tile 32 with the given small tile (1..16 channel samples if with_small)."""
    family = []
    for hw, seed in ((32, 5), (16, 6), (8, 7)):
        rng = np.random.default_rng(seed)
        couts = [3, 9, 14, 20, 33, 50, 70, 96] if with_small else [20, 33, 50, 70, 96, 120]
        specs = [ConvSpec(hw, hw, 24, c, 3, activation="relu") for c in couts]
        ms = np.array([(0.02 * tiled_mflops(s, 32, 1, truth_small) + 0.01) * (1 + rng.uniform(-0.02, 0.02))
                       for s in specs])
        family.append((specs, ms))
    return family


def test_small_tile_is_detected_with_the_tile_from_few_channel_samples():
    assert detect_shared_tiles(_ladder_family(16))[::2] == (32, 16)
    assert detect_shared_tiles(_ladder_family(8))[::2] == (32, 8)
    assert detect_shared_tiles(_ladder_family(None))[::2] == (32, 32)  # no ladder: counts up to 32 cost 32
    assert detect_shared_tiles(_ladder_family(16, with_small=False))[::2] == (32, 32)  # nothing can show one


def test_fit_conditions_prices_few_channels_with_the_detected_small_tile():
    samples = {specs[0].condition: (specs, list(ms)) for specs, ms in _ladder_family(16)}
    models = fit_conditions(samples)
    assert {(m.cout_tile, m.cout_small_tile) for m in models} == {(32, 16)}
    m = models[0]
    few, more = ConvSpec(m.key.h, m.key.w, 24, 4, 3, activation="relu"), ConvSpec(m.key.h, m.key.w, 24, 17, 3,
                                                                                   activation="relu")
    assert m.predict_ms(few) == pytest.approx(m.predict_ms(few.with_channels(24, 16)))
    assert m.predict_ms(more) == pytest.approx(m.predict_ms(more.with_channels(24, 32)))
    assert m.predict_ms(more) == pytest.approx((0.02 * 2 * 16 * 16 * 32 * 24 * 9 / 1e6 + 0.01), rel=0.03)


def test_condition_model_keeps_its_small_tile_and_reads_tables_without_one():
    samples = {specs[0].condition: (specs, list(ms)) for specs, ms in _ladder_family(16)}
    model = fit_conditions(samples)[0]
    d = model.to_dict()
    assert d["cout_small_tile"] == 16 and ConditionModel.from_dict(d).cout_small_tile == 16
    del d["cout_small_tile"]  # a schema_version 1 table
    assert ConditionModel.from_dict(d).cout_small_tile is None


def test_copy_op_fit_recovers_a_cost_per_copy_and_per_element():
    copies = [64, 128, 256, 512, 1024, 2048, 4096]
    elements = [640, 512, 8192, 2048, 30000, 4096, 65536]
    ms = [0.001 * u + 0.0001 * e + 0.002 for u, e in zip(copies, elements)]
    model = fit_op("SPLIT_V", "copies", copies, ms, elements)
    assert (model.a_ms_per_unit, model.c_ms_per_element, model.b_ms) == pytest.approx((0.001, 0.0001, 0.002), rel=1e-6)
    assert model.cv_mape == pytest.approx(0.0, abs=1e-9)
    assert model.predict_ms(100, 1000) == pytest.approx(0.1 + 0.1 + 0.002)
    assert fit_op("ADD", "output_elements", copies, ms).c_ms_per_element == 0.0


def _misaligned_family(penalty: float):
    """Depthwise conditions whose counts off a multiple of 8 cost `penalty` times more per FLOP."""
    family = []
    for hw, seed in ((32, 8), (16, 9), (8, 10)):
        rng = np.random.default_rng(seed)
        specs = [ConvSpec.depthwise(hw, hw, c, 3) for c in (16, 20, 32, 45, 64, 77, 96, 120, 128, 150)]
        ms = [(0.01 * tiled_mflops(s) * (penalty if s.cout % 8 else 1.0) + 0.001) * (1 + rng.uniform(-0.01, 0.01))
              for s in specs]
        family.append((specs, ms))
    return {specs[0].condition: (specs, ms) for specs, ms in family}


def test_a_family_whose_misaligned_counts_run_slower_gets_a_second_slope():
    models = fit_conditions(_misaligned_family(1.5))
    assert {(m.align, m.misaligned_a_ms_per_mflop is not None) for m in models} == {(8, True)}
    for m in models:
        assert m.misaligned_a_ms_per_mflop == pytest.approx(1.5 * m.a_ms_per_mflop, rel=0.05)
        aligned, misaligned = ConvSpec.depthwise(m.key.h, m.key.w, 40, 3), ConvSpec.depthwise(m.key.h, m.key.w, 41, 3)
        assert m.predict_ms(misaligned) == pytest.approx(0.015 * tiled_mflops(misaligned) + 0.001, rel=0.05)
        assert m.predict_ms(aligned) == pytest.approx(0.01 * tiled_mflops(aligned) + 0.001, rel=0.05)
        assert ConditionModel.from_dict(m.to_dict()) == m


def test_no_misaligned_slope_where_alignment_does_not_matter():
    assert {(m.align, m.misaligned_a_ms_per_mflop) for m in fit_conditions(_misaligned_family(1.0))} == {(1, None)}


def _knee_family(knee: WeightKnee, kernel: int = 5) -> dict:
    """Three conditions of `kernel` whose FLOPs cost `knee.factor` times more (1% noise)."""
    samples = {}
    for hw, seed in ((8, 11), (4, 12), (7, 13)):
        rng = np.random.default_rng(seed)
        specs = [ConvSpec(hw, hw, cin, cout, kernel, activation="relu")
                 for cin, cout in ((64, 64), (96, 128), (128, 96), (160, 192), (256, 128), (200, 300), (320, 256),
                                   (384, 384), (448, 320), (512, 512), (640, 576), (768, 704))]
        ms = [(0.01 * tiled_mflops(s) * knee.factor(conv_weights_mb(s)) + 0.001)
              * (1 + rng.uniform(-0.01, 0.01)) for s in specs]
        samples[specs[0].condition] = (specs, ms)
    return samples


def test_weight_knee_factor_by_hand():
    knee = WeightKnee(8.0, 0.1)
    assert knee.factor(4.0) == 1.0 and knee.factor(8.0) == 1.0
    assert knee.factor(32.0) == pytest.approx(1.2)  # two doublings beyond 8 MB
    stepped = WeightKnee(8.0, 0.1, step=0.25)
    assert stepped.factor(8.0) == 1.0 and stepped.factor(8.001) == pytest.approx(1.25, abs=1e-3)
    assert list(stepped.factor(np.array([4.0, 16.0, 32.0]))) == pytest.approx([1.0, 1.35, 1.45])
    assert conv_weights_mb(ConvSpec(8, 8, 100, 200, 3)) == pytest.approx(9 * 100 * 200 * 4 / 1e6)


def test_a_family_whose_flops_slow_down_beyond_a_weight_size_gets_a_knee():
    models = fit_conditions(_knee_family(WeightKnee(8.0, 0.15)))
    assert {m.knee for m in models} == {WeightKnee(8.0, 0.15)}
    big = ConvSpec(8, 8, 800, 800, 5, activation="relu")  # 64 MB of weights: three doublings beyond the knee
    model = next(m for m in models if m.key == big.condition)
    assert model.predict_ms(big) == pytest.approx(0.01 * tiled_mflops(big) * 1.45 + 0.001, rel=0.03)
    assert ConditionModel.from_dict(model.to_dict()) == model


def test_each_kernel_size_gets_its_own_knee_and_a_step_where_the_cost_jumps():
    stepped = WeightKnee(8.0, 0.0, step=0.3)
    models = fit_conditions({**_knee_family(stepped, kernel=5), **_knee_family(NO_KNEE, kernel=3)})
    assert {m.knee for m in models if m.key.kernel == 5} == {stepped}
    assert {m.knee for m in models if m.key.kernel == 3} == {None}
    big = ConvSpec(8, 8, 512, 512, 5, activation="relu")  # 26 MB of weights: beyond the knee, 30% more per FLOP
    model = next(m for m in models if m.key == big.condition)
    assert model.predict_ms(big) == pytest.approx(0.01 * tiled_mflops(big) * 1.3 + 0.001, rel=0.03)
    assert ConditionModel.from_dict(model.to_dict()) == model


def test_a_knee_needs_three_conditions_with_samples_on_both_sides():
    two = dict(list(_knee_family(WeightKnee(8.0, 0.15)).items())[:2])
    assert {m.knee for m in fit_conditions(two)} == {None}


def test_no_knee_where_big_weights_cost_the_same_per_flop():
    assert {m.knee for m in fit_conditions(_knee_family(NO_KNEE))} == {None}


def test_network_model_extra_cost_by_hand():
    model = NetworkModel(0.02, 0.05, 1.0, n=8, ops_only_mape=0.1, mape=0.01, cv_mape=0.02)
    # counts of float32 values: 500,000 are 2 MB, 750,000 are 3 MB
    assert model.extra_ms(500_000, 750_000) == pytest.approx(0.02 * 2.0 + 0.05 * (3.0 - 1.0))
    assert model.extra_ms(500_000, 125_000) == pytest.approx(0.04)  # activations under the threshold cost nothing
    assert NetworkModel.from_dict(model.to_dict()) == model


def _networks(extra, n: int = 12) -> list[NetworkSample]:
    rng = np.random.default_rng(5)
    samples = []
    for _ in range(n):
        ops_ms = rng.uniform(0.5, 5.0)
        weights = rng.uniform(0.2, 6.0)
        activations = tuple(rng.uniform(0.01, 4.0, size=int(rng.integers(8, 40))))
        measured = (ops_ms + extra(weights, activations)) * (1 + rng.uniform(-0.0005, 0.0005))
        samples.append(NetworkSample(measured, ops_ms, weights, activations))
    return samples


def test_fit_network_recovers_the_in_network_cost_of_weights_and_big_activations():
    samples = _networks(lambda w, acts: 0.02 * w + 0.05 * sum(max(0.0, a - 1.0) for a in acts))
    model = fit_network(samples)
    assert model.activation_threshold_mb == 1.0
    assert model.weights_ms_per_mb == pytest.approx(0.02, rel=0.1)
    assert model.activation_ms_per_mb == pytest.approx(0.05, rel=0.05)
    assert model.cv_mape < 0.01 < model.ops_only_mape and model.n == len(samples)


def test_no_network_model_where_the_ops_alone_price_networks_or_too_few_were_measured():
    assert fit_network(_networks(lambda w, acts: 0.0)) is None
    few = _networks(lambda w, acts: 0.02 * w, n=MIN_NETWORKS - 1)
    assert fit_network(few) is None
