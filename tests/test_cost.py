"""profiler.cost against hand-computed values, and one formula on Python numbers, numpy arrays and torch tensors."""
import numpy as np
import pytest
import torch

from profiler.cost import (
    NO_KNEE,
    WeightKnee,
    at_least,
    choose,
    conv_activations,
    conv_flops,
    conv_latency_ms,
    conv_macs,
    conv_mflops,
    conv_params,
    conv_weights,
    effective_channels,
    in_network_ms,
    megabytes,
    nearest_int,
    round_up,
    straight_through,
    tensor_values,
    whole_model_ms,
)
from profiler.latency.fit import NetworkModel
from profiler.spec import ConvSpec


def test_round_up_to_tile():
    assert [round_up(c, 32) for c in (1, 32, 33, 64, 65)] == [32, 32, 64, 64, 96]
    assert round_up(7, 1) == 7


@pytest.mark.parametrize("channels, small, expected", [(3, 16, 16), (16, 16, 16), (17, 16, 32), (33, 16, 64),
                                                       (3, None, 32), (32, None, 32)])
def test_effective_channels_with_a_small_tile_below_a_tile_of_32(channels, small, expected):
    assert effective_channels(channels, 32, small) == expected


def test_conv_macs_flops_params_by_hand():
    spec = ConvSpec(8, 8, 16, 32, 3, stride=2, activation="prelu")
    # 4*4 output pixels * 32 outputs * 16 inputs * 3*3 taps
    assert conv_macs(spec) == 4 * 4 * 32 * 16 * 9 == 73728
    assert conv_flops(spec) == 2 * 73728
    assert conv_params(spec) == 32 * 16 * 9 + 32 + 32  # weights, folded-BN bias, PReLU slopes
    assert conv_weights(spec) == 32 * 16 * 9
    assert conv_activations(spec) == 8 * 8 * 16 + 4 * 4 * 32
    assert isinstance(conv_macs(spec), int) and isinstance(conv_params(spec), int)


def test_a_depthwise_conv_reads_one_input_channel_per_output():
    spec = ConvSpec.depthwise(8, 8, 20, 3, stride=2)
    assert conv_macs(spec) == 4 * 4 * 20 * 9
    assert conv_params(spec) == 20 * 9 + 20
    # the search passes the layer's input count as cin: a depthwise conv ignores it
    assert conv_macs(spec, 64, 20) == conv_macs(spec)


def test_tiled_macs_round_cout_and_cin_of_a_normal_conv_and_only_the_channels_of_a_depthwise_one():
    spec = ConvSpec(8, 8, 10, 33, 3)
    assert conv_macs(spec, tiles=(32, 4, 32, 4)) == 8 * 8 * 64 * 12 * 9 == 442368
    assert conv_macs(ConvSpec(8, 8, 10, 5, 3), tiles=(32, 1, 16, 1)) == 8 * 8 * 16 * 10 * 9  # the small tile
    assert conv_macs(ConvSpec(8, 8, 10, 20, 3), tiles=(32, 1, 16, 1)) == 8 * 8 * 32 * 10 * 9
    assert conv_macs(ConvSpec.depthwise(8, 8, 20, 3, stride=2), tiles=(16, 8, 16, 8)) == 16 * 32 * 9


def test_weight_knee_and_latency_line_by_hand():
    knee = WeightKnee(8.0, 0.1)
    assert knee.factor(4.0) == 1.0 and knee.factor(8.0) == 1.0
    assert knee.factor(32.0) == pytest.approx(1.2)  # two doublings beyond 8 MB
    stepped = WeightKnee(8.0, 0.1, step=0.25)
    assert list(stepped.factor(np.array([4.0, 16.0, 32.0]))) == pytest.approx([1.0, 1.35, 1.45])
    spec = ConvSpec(8, 8, 800, 800, 5)  # 64 MB of weights: three doublings beyond 8 MB
    assert megabytes(conv_weights(spec)) == pytest.approx(64.0)
    assert conv_mflops(spec, knee=knee) == pytest.approx(conv_flops(spec) / 1e6 * 1.3)
    assert conv_mflops(spec, knee=NO_KNEE) == conv_flops(spec) / 1e6
    assert conv_latency_ms(0.01, 0.5, spec, knee=knee) == pytest.approx(0.01 * conv_flops(spec) / 1e6 * 1.3 + 0.5)


def test_in_network_cost_and_whole_model_by_hand():
    model = NetworkModel(0.02, 0.05, 1.0, n=8, ops_only_mape=0.1, mape=0.01, cv_mape=0.02)
    # 500,000 float32 values are 2 MB, 750,000 are 3 MB: 0.02 * 2 + 0.05 * (3 - 1)
    assert in_network_ms(model, 500_000, 750_000) == pytest.approx(0.14)
    assert in_network_ms(model, 0, 125_000) == 0.0
    assert tensor_values([(1, 4, 4, 10), (2,)]) == 162
    assert whole_model_ms([1.0, 2.0, 3.0], 0.5) == 5.0  # the overhead paid once, not three times
    assert whole_model_ms([0.1, 2.0], 1.0) == 2.0  # never below the dearest op
    assert whole_model_ms([], 1.0) == 0.0


def test_one_formula_on_floats_arrays_and_tensors():
    spec = ConvSpec(16, 16, 50, 33, 3, activation="relu")
    knee = WeightKnee(0.01, 0.5, 0.2)
    cins, couts = np.array([50, 20, 7]), np.array([33, 64, 1])
    exact = [conv_mflops(spec, int(i), int(o), (32, 8, 16, 8), knee) for i, o in zip(cins, couts)]
    assert list(conv_mflops(spec, cins, couts, (32, 8, 16, 8), knee)) == pytest.approx(exact, rel=1e-12)
    tensors = conv_mflops(spec, torch.tensor(cins, dtype=torch.float64), torch.tensor(couts, dtype=torch.float64),
                          (32, 8, 16, 8), knee)
    assert tensors.tolist() == pytest.approx(exact, rel=1e-12)
    assert at_least(-1.0, 0.0) == 0.0 and list(at_least(np.array([-1.0, 2.0]), 0.0)) == [0.0, 2.0]
    assert choose(True, 1, 2) == 1
    assert list(choose(np.array([True, False]), np.array([1, 1]), np.array([2, 2]))) == [1, 2]


def test_the_straight_through_rounding_rounds_forward_and_is_the_identity_backward():
    channels = torch.tensor([3.0, 16.0, 17.0, 33.0], requires_grad=True)
    rounded = effective_channels(channels, 32, 16, straight_through(round_up))
    assert rounded.tolist() == [16.0, 16.0, 32.0, 64.0]
    assert rounded.tolist() == [effective_channels(int(c), 32, 16) for c in channels.tolist()]
    rounded.sum().backward()
    assert channels.grad.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert nearest_int(torch.tensor(32.6, requires_grad=True)) == 33 and nearest_int(7) == 7
