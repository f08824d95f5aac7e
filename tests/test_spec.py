import pytest

from profiler.spec import ConditionKey, ConvSpec, flops, macs, params


def test_normal_conv_flops_are_twice_macs_hand_computed():
    spec = ConvSpec(h=56, w=56, cin=64, cout=64, kernel=3, stride=1)
    assert macs(spec) == 56 * 56 * 64 * 64 * 9
    assert flops(spec) == 2 * 56 * 56 * 64 * 64 * 9


def test_stride_two_same_padding_rounds_output_up():
    spec = ConvSpec(h=7, w=7, cin=8, cout=16, kernel=3, stride=2)
    assert spec.out_hw == (4, 4)
    assert macs(spec) == 4 * 4 * 16 * 8 * 9


def test_depthwise_counts_one_input_channel_per_output():
    spec = ConvSpec.depthwise(112, 112, 32, kernel=3, stride=1)
    assert spec.conv_type == "depthwise"
    assert macs(spec) == 112 * 112 * 32 * 9
    assert params(spec) == 32 * 9 + 32


def test_params_count_weights_folded_bias_and_prelu_slopes():
    assert params(ConvSpec(8, 8, 3, 16, 5, activation="relu")) == 16 * 3 * 25 + 16
    assert params(ConvSpec(8, 8, 3, 16, 5, activation="prelu")) == 16 * 3 * 25 + 16 + 16


def test_grouped_conv_condition_keeps_group_count():
    spec = ConvSpec(14, 14, 64, 128, 3, groups=4)
    assert spec.conv_type == "grouped"
    assert str(spec.condition) == "14x14:k3:s1:g4:none"
    assert ConditionKey.parse(str(spec.condition)) == spec.condition


def test_parse_cli_conv_notation():
    spec = ConvSpec.parse("28x28x64:96:k3:s1:relu")
    assert spec == ConvSpec(28, 28, 64, 96, 3, 1, 1, "relu")
    dw = ConvSpec.parse("28x28x64:64:k5:s2:dw")
    assert dw.groups == 64 and dw.conv_type == "depthwise" and dw.activation == "none"


@pytest.mark.parametrize("bad", [dict(kernel=12), dict(stride=3), dict(activation="gelu"), dict(groups=3)])
def test_invalid_specs_are_refused(bad):
    args = dict(h=8, w=8, cin=8, cout=8, kernel=3)
    args.update(bad)
    with pytest.raises(ValueError):
        ConvSpec(**args)


def test_config_hash_is_stable_and_distinguishes_channels():
    a = ConvSpec(8, 8, 8, 8, 3)
    assert a.config_hash() == ConvSpec(8, 8, 8, 8, 3).config_hash()
    assert a.config_hash() != a.with_channels(8, 16).config_hash()
