import pytest

from profiler.errors import FgnasError
from profiler.ops import PRICED_OPS, OpProbe, op_elements, op_units


def test_elementwise_ops_count_output_elements():
    assert op_units("ADD", [(1, 8, 8, 16), (1, 8, 8, 16)], [(1, 8, 8, 16)]) == ("output_elements", 1024)
    assert op_units("PAD", [(1, 4, 4, 3)], [(1, 6, 6, 3)]) == ("copies", 36)  # a copy per output pixel
    assert op_elements("PAD", [(1, 4, 4, 3)], [(1, 6, 6, 3)]) == 108


def test_pooling_counts_input_elements():
    assert op_units("MEAN", [(1, 7, 7, 320), (2,)], [(1, 1, 1, 320)]) == ("input_elements", 15680)
    assert op_units("MAX_POOL_2D", [(1, 8, 8, 4)], [(1, 4, 4, 4)]) == ("input_elements", 256)


def test_fully_connected_counts_macs_from_probe_or_tflite_shapes():
    assert op_units("FULLY_CONNECTED", [(1, 1280)], [(1, 1000)]) == ("macs", 1_280_000)
    # as read from a .tflite file: input, weights [N, K], bias [N]
    assert op_units("FULLY_CONNECTED", [(1, 1, 1, 64), (10, 64), (10,)], [(1, 10)]) == ("macs", 640)


def test_unknown_op_is_an_fgnas_error_that_says_how_to_add_it():
    with pytest.raises(FgnasError, match="op TRANSPOSE cannot be priced.*profiler/ops.py"):
        op_units("TRANSPOSE", [(1, 4)], [(1, 4)])


def test_channel_reassembly_ops_count_the_elements_they_copy():
    # SPLIT_V as read from a .tflite file: input, size_splits, axis; one copy per pixel and piece
    assert op_units("SPLIT_V", [(1, 8, 8, 12), (3,), ()], [(1, 8, 8, 5), (1, 8, 8, 7)]) == ("copies", 128)
    assert op_units("CONCATENATION", [(1, 4, 4, 3)] * 3, [(1, 4, 4, 9)]) == ("copies", 48)
    # STRIDED_SLICE (input, begin, end, strides) copies a run per pixel; GATHER (params, indices) element by element
    assert op_units("STRIDED_SLICE", [(1, 4, 4, 10), (4,), (4,), (4,)], [(1, 4, 4, 3)]) == ("copies", 16)
    assert op_units("GATHER", [(1, 4, 4, 10), (6,)], [(1, 4, 4, 6)]) == ("output_elements", 96)
    assert OpProbe.for_feature_map("SPLIT_V", 4, 4, 9).units == ("copies", 32)
    assert OpProbe.for_feature_map("GATHER", 4, 4, 8).output_shape == (1, 4, 4, 6)


def test_probe_shapes_follow_the_feature_map():
    assert OpProbe.for_feature_map("CONCATENATION", 4, 4, 7).input_shapes == ((1, 4, 4, 3), (1, 4, 4, 4))
    assert OpProbe.for_feature_map("FULLY_CONNECTED", 1, 10, 64).units == ("macs", 640)
    assert OpProbe.for_feature_map("RESHAPE", 2, 3, 4).output_shape == (1, 24)
    assert {OpProbe.for_feature_map(op, 4, 4, 8).op for op in PRICED_OPS} == set(PRICED_OPS)


def test_probe_round_trips_through_its_dict_and_hash_is_stable():
    probe = OpProbe.for_feature_map("ADD", 8, 8, 16)
    assert OpProbe.from_dict(probe.to_dict()) == probe
    assert probe.config_hash() == OpProbe.from_dict(probe.to_dict()).config_hash()
    assert probe.config_hash() != OpProbe.for_feature_map("MUL", 8, 8, 16).config_hash()


def test_copy_ops_also_count_the_elements_they_write_and_other_ops_do_not():
    split = OpProbe("SPLIT_V", ((1, 8, 8, 13),), (1, 8, 8, 6))
    assert split.elements == 8 * 8 * 13  # both pieces
    concat = OpProbe.for_feature_map("CONCATENATION", 4, 4, 10)
    assert concat.elements == 4 * 4 * 10
    assert op_elements("STRIDED_SLICE", [(1, 8, 8, 16)], [(1, 8, 8, 12)]) == 8 * 8 * 12
    assert OpProbe.for_feature_map("ADD", 4, 4, 8).elements is None and op_elements("MEAN", [], []) is None
