"""The pruned plan as an NHWC-native TensorFlow function, converted to .tflite by TF's converter (the profiler's
`convert_function`, so exported models and profiled convs come out of the same converter path).

Every tensor is NHWC from the input on, so the graph has no TRANSPOSE. Conv + bias + relu/relu6 fuse into one
CONV_2D / DEPTHWISE_CONV_2D; PReLU is written as profiler/measure/model_builder.py writes it (one PRELU op); tanh is
TANH. PyTorch pads `kernel // 2` on both sides; TF's SAME pads one less in front when a stride-2 conv meets an even
size, so those convs get an explicit PAD and VALID padding (the latency table prices a VALID conv after PAD as SAME).
A layer's post activation is applied to each run where every run is an ADD that fuses it (relu, relu6), else once
after the concat (profiler.lowering.activation_per_run).
TensorFlow is imported inside the functions: it costs seconds.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from export.plan import SKIP, PrunedConv, PrunedLayer, PrunedPlan
from profiler.errors import FgnasError
from profiler.lowering import explicit_pad as needs_explicit_pad

QUANTIZE_MODES = ("dynamic", "int8")


def _conv_fn(tf, conv: PrunedConv, in_hw: tuple[int, int]) -> Callable:
    k, s = conv.kernel, conv.stride
    if conv.depthwise:
        filt = np.ascontiguousarray(conv.weight.transpose(2, 3, 0, 1))  # (C,1,k,k) -> (k,k,C,1)
    else:
        filt = np.ascontiguousarray(conv.weight.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    explicit_pad = needs_explicit_pad(k, s, *in_hw)
    pad = [[0, 0], [k // 2, k // 2], [k // 2, k // 2], [0, 0]]
    slope = None if conv.slope is None else (-conv.slope).reshape(1, 1, -1)
    select = conv.select

    def fn(x):
        if select.kind == "slice":
            x = x[..., select.start:select.start + select.size]
        elif select.kind == "gather":
            x = tf.gather(x, list(select.indices), axis=3)
        padding = "SAME"
        if explicit_pad:
            x, padding = tf.pad(x, pad), "VALID"
        if conv.depthwise:
            y = tf.nn.depthwise_conv2d(x, filt, [1, s, s, 1], padding)
        else:
            y = tf.nn.conv2d(x, filt, s, padding)
        y = _activation(tf, conv.activation, tf.nn.bias_add(y, conv.bias), slope)
        return y * np.float32(conv.out_scale) if conv.out_scale != 1.0 else y

    return fn


def _activation(tf, name: str, y, negative_slope):
    if name == "relu":
        return tf.nn.relu(y)
    if name == "relu6":
        return tf.nn.relu6(y)
    if name == "tanh":
        return tf.math.tanh(y)
    if name == "prelu":
        return tf.nn.relu(y) + negative_slope * tf.nn.relu(-y)
    return y


def _layer_fn(tf, layer: PrunedLayer) -> Callable:
    convs = [_conv_fn(tf, op, layer.in_hw) for op in layer.ops]
    post_slope = None if layer.post_slope is None else (-layer.post_slope).reshape(1, 1, -1)

    def fn(x, skip):
        parts = {}
        for i, (op, conv) in enumerate(zip(layer.ops, convs)):
            y = conv(x)
            parts[i] = tf.split(y, list(op.splits), axis=3) if len(op.splits) > 1 else [y]
        if skip is not None:
            parts[SKIP] = tf.split(skip, list(layer.skip_splits), axis=3) if len(layer.skip_splits) > 1 else [skip]
        runs = []
        for run in layer.runs:
            total = parts[run[0].op][run[0].part]
            for piece in run[1:]:
                total = total + parts[piece.op][piece.part]
            runs.append(total)
        if layer.activation_per_run:  # each run's ADD applies it: no op of its own
            runs = [_activation(tf, layer.post_activation, run, None) for run in runs]
        y = tf.concat(runs, axis=3) if len(runs) > 1 else runs[0]
        if not layer.activation_per_run:
            y = _activation(tf, layer.post_activation, y, post_slope)
        if layer.pool:
            y = tf.nn.max_pool2d(y, layer.pool.kernel, layer.pool.stride, "VALID")
        return y

    return fn


def plan_function(plan: PrunedPlan) -> Callable:
    """The network as a function of one NHWC float32 batch, returning logits."""
    from profiler.measure.model_builder import load_tensorflow

    tf = load_tensorflow()
    layers = [(layer, _layer_fn(tf, layer)) for layer in plan.layers]
    fc_w = np.ascontiguousarray(plan.head.weight.T)

    def network(x):
        outputs = {"input": x}
        for layer, fn in layers:
            outputs[layer.name] = fn(outputs[layer.input], outputs[layer.skip] if layer.skip else None)
        features = tf.reduce_mean(outputs[plan.head.input], axis=[1, 2])
        return tf.matmul(features, fc_w) + plan.head.bias

    return network


def layer_model(plan: PrunedPlan, layer: PrunedLayer) -> bytes:
    """One layer alone as a .tflite model (inputs: its input tensor, then its skip tensor), to time it by itself."""
    from profiler.measure.model_builder import convert_function, load_tensorflow

    fn = _layer_fn(load_tensorflow(), layer)
    shapes = [(1, *plan.shape(layer.input))] + ([(1, *plan.shape(layer.skip))] if layer.skip else [])
    return convert_function((lambda x, s: fn(x, s)) if layer.skip else (lambda x: fn(x, None)), shapes)


def input_shape(plan: PrunedPlan) -> tuple[int, int, int, int]:
    return 1, plan.height, plan.width, plan.in_channels


def convert_plan(plan: PrunedPlan, quantize: str | None = None,
                 representative: Iterable[np.ndarray] | None = None) -> bytes:
    """A batch-1 .tflite flatbuffer: float32, or post-training quantized (`dynamic`: int8 weights; `int8`: weights
    and activations calibrated on `representative` NHWC samples, float input and output kept)."""
    from profiler.measure.model_builder import convert_function, load_tensorflow

    if quantize is None:
        return convert_function(plan_function(plan), [input_shape(plan)])
    if quantize not in QUANTIZE_MODES:
        raise FgnasError(f"unknown quantization {quantize!r}: use one of {', '.join(QUANTIZE_MODES)}")
    tf = load_tensorflow()
    function = tf.function(plan_function(plan), input_signature=[tf.TensorSpec(input_shape(plan), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        if representative is None:
            raise FgnasError("--quantize int8 needs representative inputs: pass --data (or export from a run whose "
                             "data set is available)")
        samples = [np.asarray(s, np.float32)[None] for s in representative]
        converter.representative_dataset = lambda: ([s] for s in samples)
    return converter.convert()


def op_inventory(path: Path) -> Counter:
    """How many of each builtin op the .tflite file's main subgraph holds, read from the flatbuffer itself."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise FgnasError(f"{path} is not a .tflite model")
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    counts: Counter = Counter()
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        counts[names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")] += 1
    return counts


def run_tflite(path: Path, inputs_nhwc: np.ndarray) -> np.ndarray:
    """Outputs of the batch-1 model for each sample, with LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    results = []
    for sample in inputs_nhwc:
        interpreter.set_tensor(inp, np.ascontiguousarray(sample[None], dtype=np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out)[0].copy())
    return np.stack(results)
