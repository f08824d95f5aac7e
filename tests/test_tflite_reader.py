"""The reader on real converter output: a small network made with TensorFlow's converter (the path export takes)."""
import json

import numpy as np
import pytest

import synthetic_table as syn
from profiler.errors import FgnasError
from profiler.latency.table import LatencyTable
from profiler.latency.tflite_reader import ConvOp, OtherOp, conv_text, predict_model, read_ops, whole_model_ms
from profiler.ops import INVOKE_PROBE, OpProbe
from profiler.spec import ConvSpec

pytestmark = pytest.mark.slow  # imports TensorFlow once to convert the test network


def _network():
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.normal(0, 0.1, shape).astype(np.float32)

    k1, k2, k3, k4, k5, fc, alpha = w(3, 3, 3, 16), w(3, 3, 16, 1), w(1, 1, 16, 24), w(3, 3, 24, 24), \
        w(3, 3, 24, 24), w(24, 10), w(1, 1, 24)
    b16, b16b, b24, b24b, b24c, b10 = w(16), w(16), w(24), w(24), w(24), w(10)

    def net(x):
        y = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(x, k1, 1, "SAME"), b16))
        y = tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]])
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.depthwise_conv2d(y, k2, [1, 2, 2, 1], "VALID"), b16b))
        y = tf.nn.bias_add(tf.nn.conv2d(y, k3, 1, "SAME"), b24)  # used by the next conv AND the residual ADD
        z = tf.nn.bias_add(tf.nn.conv2d(y, k4, 1, "SAME"), b24b)
        z = tf.nn.relu(z) + (-alpha) * tf.nn.relu(-z)  # PReLU as Keras writes it
        y = y + z
        y = tf.math.tanh(tf.nn.bias_add(tf.nn.conv2d(y, k5, 1, "SAME"), b24c))
        y = tf.reduce_mean(y, axis=[1, 2])
        return tf.nn.softmax(tf.matmul(y, fc) + b10)

    return net


@pytest.fixture(scope="module")
def net_path(tmp_path_factory):
    from profiler.measure.model_builder import convert_function

    path = tmp_path_factory.mktemp("net") / "net.tflite"
    path.write_bytes(convert_function(_network(), [(1, 32, 32, 3)]))
    return path


EXPECTED_CONVS = [
    (("CONV_2D",), ConvSpec(32, 32, 3, 16, 3, 1, 1, "relu6")),
    # VALID stride-2 conv on the padded 34x34 map: same output (16x16) and MACs as the SAME conv on 32x32
    (("DEPTHWISE_CONV_2D",), ConvSpec(32, 32, 16, 16, 3, 2, 16, "relu")),
    (("CONV_2D",), ConvSpec(16, 16, 16, 24, 1, 1, 1, "none")),
    (("CONV_2D", "PRELU"), ConvSpec(16, 16, 24, 24, 3, 1, 1, "prelu")),
    (("CONV_2D", "TANH"), ConvSpec(16, 16, 24, 24, 3, 1, 1, "tanh")),
]


def test_reads_convs_with_merged_prelu_and_tanh(net_path):
    ops = read_ops(net_path)
    assert [(o.ops, o.spec) for o in ops if isinstance(o, ConvOp)] == EXPECTED_CONVS
    others = [(o.op, o.input_shapes[0], o.output_shapes) for o in ops if isinstance(o, OtherOp)]
    assert others == [("PAD", (1, 32, 32, 16), ((1, 34, 34, 16),)),
                      ("ADD", (1, 16, 16, 24), ((1, 16, 16, 24),)),
                      ("MEAN", (1, 16, 16, 24), ((1, 24),)),
                      ("FULLY_CONNECTED", (1, 24), ((1, 10),)),
                      ("SOFTMAX", (1, 10), ((1, 10),))]


def _table_for_net(tmp_path, ops=("PAD", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"), invoke_probe=False):
    recs = [r for _, spec in EXPECTED_CONVS for r in syn.conv_records_like(spec)]
    if invoke_probe:  # priced as the ADD line prices one element, so the ADD fit stays exact
        recs.append(syn.probe_record(INVOKE_PROBE, syn.op_true_ms(INVOKE_PROBE.units[1])))
    for op in ops:
        for size, channels in ((4, 24), (8, 16), (16, 40)):  # copy ops (PAD) need copies and elements not in ratio
            probe = OpProbe.for_feature_map(op, size, size, channels)
            recs.append(syn.probe_record(probe, syn.op_true_ms(probe.units[1])))
    raw = syn.write_raw_log(tmp_path / "net.raw.jsonl", recs)
    return LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw)


def test_predict_model_sums_every_op(net_path, tmp_path):
    prediction = predict_model(_table_for_net(tmp_path), net_path)
    # PAD 34*34 pixels out, ADD 16*16*24 out, MEAN 16*16*24 in, FC 24*10 MACs, SOFTMAX 10 out
    op_units = [34 * 34, 16 * 16 * 24, 16 * 16 * 24, 24 * 10, 10]
    expected = sum(syn.true_ms(spec) for _, spec in EXPECTED_CONVS) + sum(syn.op_true_ms(u) for u in op_units)
    assert prediction.total_ms == pytest.approx(expected, rel=1e-6)
    assert [p.op for p in prediction.ops] == ["CONV_2D", "PAD", "DEPTHWISE_CONV_2D", "CONV_2D", "CONV_2D+PRELU",
                                              "ADD", "CONV_2D+TANH", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    assert prediction.ops[0].detail == conv_text(EXPECTED_CONVS[0][1]) == "32x32x3:16:k3:s1:relu6"
    assert prediction.to_dict()["total_ms"] == prediction.total_ms


def test_a_whole_model_pays_the_invoke_overhead_once(net_path, tmp_path):
    without = predict_model(_table_for_net(tmp_path), net_path)
    table = _table_for_net(tmp_path, invoke_probe=True)
    overhead = syn.op_true_ms(1)
    assert table.invoke_overhead_ms == pytest.approx(overhead)
    prediction = predict_model(table, net_path)
    assert [p.ms for p in prediction.ops] == pytest.approx([p.ms for p in without.ops], rel=1e-6)
    assert prediction.total_ms == pytest.approx(without.total_ms - 9 * overhead, rel=1e-6)  # 10 ops


def test_a_whole_model_pays_what_its_ops_cost_more_inside_a_network(net_path, tmp_path):
    from profiler.latency.fit import NetworkModel

    without = predict_model(_table_for_net(tmp_path), net_path)
    doc = _table_for_net(tmp_path).doc
    doc["network"] = NetworkModel(0.5, 2.0, 0.01, 8, 0.1, 0.01, 0.02).to_dict()
    prediction = predict_model(LatencyTable(doc), net_path)
    ops = read_ops(net_path)
    # by hand: the first conv (32x32x3 -> 16, 3x3) has 3*16*9 weights and 32*32*(3 + 16) activations
    first = ops[0]
    assert (first.weights_mb, first.activation_mb) == (3 * 16 * 9 * 4 / 1e6, 32 * 32 * 19 * 4 / 1e6)
    expected = sum(0.5 * o.weights_mb + 2.0 * max(0.0, o.activation_mb - 0.01) for o in ops)
    assert prediction.network_ms == pytest.approx(expected) and expected > 0
    assert prediction.total_ms == pytest.approx(without.total_ms + expected)
    assert prediction.to_dict()["network_ms"] == prediction.network_ms


@pytest.mark.parametrize("op_ms, overhead, total", [([0.01, 0.002, 0.001], 0.0005, 0.012),
                                                    ([0.0003, 0.0002], 0.0005, 0.0003), ([0.004], 0.001, 0.004),
                                                    ([], 0.001, 0.0)])
def test_whole_model_latency_against_hand_computed_values(op_ms, overhead, total):
    assert whole_model_ms(op_ms, overhead) == pytest.approx(total)


def test_an_op_the_table_cannot_price_is_named(net_path, tmp_path):
    table = _table_for_net(tmp_path, ops=("PAD", "ADD", "MEAN", "FULLY_CONNECTED"))
    with pytest.raises(FgnasError, match="op 11 SOFTMAX: .*no model for op SOFTMAX"):
        predict_model(table, net_path)


def test_not_a_tflite_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(FgnasError, match="not a .tflite model"):
        read_ops(bad)
    with pytest.raises(FgnasError, match="cannot read model"):
        read_ops(tmp_path / "absent.tflite")


def test_cli_predicts_a_model_op_by_op(net_path, tmp_path, capsys):
    from profiler.latency.cli_table import main

    table = _table_for_net(tmp_path).save(tmp_path / "net.json")
    assert main(["predict", str(table), str(net_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total_ms"] == pytest.approx(predict_model(LatencyTable.load(table), net_path).total_ms)
    assert len(result["ops"]) == 10
    assert main(["predict", str(table), str(net_path)]) == 0
    assert "CONV_2D+PRELU" in capsys.readouterr().out
    bad = _table_for_net(tmp_path, ops=("PAD", "ADD", "MEAN", "FULLY_CONNECTED")).save(tmp_path / "bad.json")
    assert main(["predict", str(bad), str(net_path)]) == 2
    assert "SOFTMAX" in capsys.readouterr().err
