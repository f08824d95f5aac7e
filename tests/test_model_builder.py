import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from profiler.measure.model_builder import build_model, model_path
from profiler.ops import PRICED_OPS, OpProbe
from profiler.spec import ConvSpec

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_FUSED = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}


def _ops(path):
    """[(op name, version, fused activation or None)] of the model's main graph, read from the flatbuffer."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
    result = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        fused = getattr(op.builtinOptions, "fusedActivationFunction", None)
        result.append((_OP_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)], code.version,
                       None if fused is None else _FUSED[fused]))
    return result


@pytest.mark.parametrize("activation, expected", [
    ("none", [("CONV_2D", 1, "NONE")]),
    ("relu", [("CONV_2D", 1, "RELU")]),
    ("relu6", [("CONV_2D", 1, "RELU6")]),
    ("tanh", [("CONV_2D", 1, "NONE"), ("TANH", 1, None)]),
    ("prelu", [("CONV_2D", 1, "NONE"), ("PRELU", 1, None)]),
])
def test_normal_conv_converts_to_the_ops_the_converter_emits_for_keras_layers(model_cache, activation, expected):
    assert _ops(build_model(ConvSpec(8, 8, 4, 6, 3, 2, 1, activation), model_cache)) == expected


@pytest.mark.parametrize("activation, expected", [
    ("relu", [("DEPTHWISE_CONV_2D", 1, "RELU")]),
    ("prelu", [("DEPTHWISE_CONV_2D", 1, "NONE"), ("PRELU", 1, None)]),
])
def test_depthwise_conv_is_one_depthwise_op(model_cache, activation, expected):
    assert _ops(build_model(ConvSpec.depthwise(8, 8, 16, 5, 1, activation), model_cache)) == expected


def test_conv_model_has_nhwc_float32_batch1_same_padding_shapes(model_cache):
    spec = ConvSpec(9, 7, 3, 10, 3, 2, 1, "relu")
    interpreter = Interpreter(model_path=str(build_model(spec, model_cache)))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape"]) == [1, 9, 7, 3] and inp["dtype"] == np.float32
    assert list(out["shape"]) == [1, 5, 4, 10]  # SAME: ceil(9/2), ceil(7/2)


@pytest.mark.parametrize("op", PRICED_OPS)
def test_each_priced_op_converts_to_exactly_that_op(model_cache, op):
    probe = OpProbe.for_feature_map(op, 1, 10, 32) if op == "FULLY_CONNECTED" else OpProbe.for_feature_map(op, 6, 6, 8)
    path = build_model(probe, model_cache)
    assert [name for name, _, _ in _ops(path)] == [op]
    interpreter = Interpreter(model_path=str(path))
    assert [tuple(d["shape"]) for d in interpreter.get_input_details()] == list(probe.input_shapes)
    assert tuple(interpreter.get_output_details()[0]["shape"]) == probe.output_shape


def test_cached_model_is_reused_not_rebuilt(model_cache):
    spec = ConvSpec(4, 4, 2, 2, 1)
    path = build_model(spec, model_cache)
    assert path == model_path(spec, model_cache) and path.name.startswith(f"{spec.config_hash()}.b")
    path.write_bytes(b"marker")
    assert build_model(spec, model_cache).read_bytes() == b"marker"


@pytest.mark.parametrize("activation", ["relu", "prelu", "tanh"])
def test_ops_match_a_converted_keras_conv_bn_activation_model(model_cache, activation):
    import tensorflow as tf

    layers = {"relu": tf.keras.layers.ReLU(), "tanh": tf.keras.layers.Activation("tanh"),
              "prelu": tf.keras.layers.PReLU(shared_axes=[1, 2])}
    keras_model = tf.keras.Sequential([tf.keras.Input((8, 8, 4), batch_size=1),
                                       tf.keras.layers.Conv2D(6, 3, padding="same", use_bias=False),
                                       tf.keras.layers.BatchNormalization(), layers[activation]])
    fn = tf.function(lambda x: keras_model(x, training=False), input_signature=[tf.TensorSpec((1, 8, 8, 4))])
    converted = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
    keras_path = model_cache / f"keras-{activation}.tflite"
    keras_path.write_bytes(converted)
    assert _ops(build_model(ConvSpec(8, 8, 4, 6, 3, 1, 1, activation), model_cache)) == _ops(keras_path)
