"""A .tflite model per probe, made by TensorFlow's converter and cached under its configuration hash (and versions).

We use the converter (the path export takes) rather than writing flatbuffers ourselves, so the profiled graph is by
construction what a converted network contains. Verified with TF 2.21: conv + bias (folded BN) + relu/relu6 becomes one
CONV_2D / DEPTHWISE_CONV_2D with the activation fused; tanh becomes a separate TANH op after the conv; PReLU written as
Keras writes it, `relu(x) + (-alpha) * relu(-x)`, becomes a separate PRELU op (the same ops a Keras Conv2D +
BatchNormalization + PReLU model converts to). A test checks these ops.

TensorFlow is imported only when a model is missing from the cache (importing it costs seconds).
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from profiler.atomic import atomic_write_bytes
from profiler.measure.networks import SMALL_INPUT, NetProbe
from profiler.ops import OpProbe
from profiler.spec import ConvSpec

DEFAULT_CACHE_DIR = Path(".cache/models")

Probe = ConvSpec | OpProbe | NetProbe


BUILDER_VERSION = 1  # bump when the graphs built here change, so no cache (or phone) keeps serving old models


@functools.cache
def _converter_tag() -> str:
    """Builder and TF versions: a converter upgrade can change the emitted graph, so it changes the file name."""
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            return f"b{BUILDER_VERSION}-tf{importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"b{BUILDER_VERSION}-tf-unknown"


def model_path(probe: Probe, cache_dir: Path) -> Path:
    """`<config hash>.<builder and TF versions>.tflite` in `cache_dir` (the name a phone keeps it under, too)."""
    return Path(cache_dir) / f"{probe.config_hash()}.{_converter_tag()}.tflite"


def build_model(probe: Probe, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The cached model of `probe`, converting it first when absent."""
    path = model_path(probe, cache_dir)
    if not path.exists():
        fn, shapes = _FUNCTIONS[type(probe)](probe)
        atomic_write_bytes(path, convert_function(fn, shapes), "choose a writable --cache-dir")
    return path


def convert_function(fn: Callable, input_shapes: list[tuple[int, ...]]) -> bytes:
    """Convert a Python function of float32 tensors of `input_shapes` to a float32 .tflite flatbuffer."""
    tf = load_tensorflow()

    signature = [tf.TensorSpec(shape, tf.float32) for shape in input_shapes]
    function = tf.function(fn, input_signature=signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    return converter.convert()


def load_tensorflow():
    """TensorFlow, imported on first use only (it costs seconds); also used by export to build graphs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the converter's info lines off the progress bar
    import tensorflow as tf

    return tf


def _rng(probe: Probe) -> np.random.Generator:
    return np.random.default_rng(int(probe.config_hash(), 16) % 2**32)


def _conv_function(spec: ConvSpec) -> tuple[Callable, list[tuple[int, ...]]]:
    tf = load_tensorflow()
    rng = _rng(spec)
    fan_in = spec.kernel * spec.kernel * (spec.cin // spec.groups)
    scale = 1.0 / np.sqrt(fan_in)
    bias = rng.normal(0.0, 0.1, spec.cout).astype(np.float32)
    if spec.conv_type == "depthwise":
        kernel = rng.normal(0.0, scale, (spec.kernel, spec.kernel, spec.cin, spec.cout // spec.cin)).astype(np.float32)

        def conv(x):
            return tf.nn.depthwise_conv2d(x, kernel, [1, spec.stride, spec.stride, 1], "SAME")
    else:
        shape = (spec.kernel, spec.kernel, spec.cin // spec.groups, spec.cout)
        kernel = rng.normal(0.0, scale, shape).astype(np.float32)

        def conv(x):
            return tf.nn.conv2d(x, kernel, spec.stride, "SAME")
    alpha = rng.uniform(0.05, 0.3, (1, 1, spec.cout)).astype(np.float32)
    activations: dict[str, Callable] = {
        "none": lambda y: y,
        "relu": tf.nn.relu,
        "relu6": tf.nn.relu6,
        "tanh": tf.math.tanh,
        "prelu": lambda y: tf.nn.relu(y) + (-alpha) * tf.nn.relu(-y),
    }
    activation = activations[spec.activation]

    def layer(x):
        return activation(tf.nn.bias_add(conv(x), bias))

    return layer, [(1, spec.h, spec.w, spec.cin)]


def _op_function(probe: OpProbe) -> tuple[Callable, list[tuple[int, ...]]]:
    tf = load_tensorflow()
    rng = _rng(probe)
    shapes = [tuple(s) for s in probe.input_shapes]
    out = probe.output_shape

    def fully_connected(x):
        k, n = shapes[0][-1], out[-1]
        weights = rng.normal(0.0, 1.0 / np.sqrt(k), (k, n)).astype(np.float32)
        bias = rng.normal(0.0, 0.1, n).astype(np.float32)
        return tf.matmul(x, weights) + bias

    def max_pool(x):
        window = shapes[0][1] // out[1] if out[1] else 2
        return tf.nn.max_pool2d(x, window, window, "SAME")

    def gather(x):
        c, k = shapes[0][-1], out[-1]
        return tf.gather(x, np.sort(rng.permutation(c)[:k]).astype(np.int32), axis=3)

    bodies: dict[str, Callable] = {
        "ADD": lambda x, y: x + y,
        "MUL": lambda x, y: x * y,
        "LOGISTIC": tf.math.sigmoid,
        "HARD_SWISH": lambda x: x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0),
        "RELU": tf.nn.relu,
        "RELU6": tf.nn.relu6,
        "RESHAPE": lambda x: tf.reshape(x, out),
        "SOFTMAX": tf.nn.softmax,
        "CONCATENATION": lambda x, y: tf.concat([x, y], axis=-1),
        "PAD": lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]),
        "MEAN": lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=True),
        "AVERAGE_POOL_2D": lambda x: tf.nn.avg_pool2d(x, shapes[0][1:3], shapes[0][1:3], "VALID"),
        "MAX_POOL_2D": max_pool,
        "FULLY_CONNECTED": fully_connected,
        "SPLIT_V": lambda x: tf.split(x, [out[-1], shapes[0][-1] - out[-1]], axis=3),
        "GATHER": gather,
        "STRIDED_SLICE": lambda x: x[..., (shapes[0][-1] - out[-1]) // 2:(shapes[0][-1] + out[-1]) // 2],
    }
    return bodies[probe.op], shapes


def _net_function(net: NetProbe) -> tuple[Callable, list[tuple[int, ...]]]:
    """The network with random weights and BN folded (conv + bias), as export converts a searched one: VGG convs
    3x3 + ReLU with 2x2 max-pools; MobileNetV2 blocks (1x1 expand + ReLU6, 3x3 depthwise + ReLU6, linear 1x1
    projection, residual ADD where shapes allow); both end in MEAN, FULLY_CONNECTED and SOFTMAX."""
    tf = load_tensorflow()
    rng = _rng(net)

    def w(*shape: int):
        fan_in = max(1, int(np.prod(shape[:-1])))
        return tf.constant(rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32))

    def conv(x, cout, k, stride, act):
        return act(tf.nn.bias_add(tf.nn.conv2d(x, w(k, k, int(x.shape[-1]), cout), stride, "SAME"), w(cout)))

    def dw(x, stride, act):
        c = int(x.shape[-1])
        return act(tf.nn.bias_add(tf.nn.depthwise_conv2d(x, w(3, 3, c, 1), [1, stride, stride, 1], "SAME"), w(c)))

    def head(x):
        y = tf.reduce_mean(x, axis=[1, 2])
        return tf.nn.softmax(tf.matmul(y, w(int(y.shape[-1]), net.classes)) + w(net.classes))

    def vgg(x):
        for cout, pool in net.layers:
            x = conv(x, cout, 3, 1, tf.nn.relu)
            if pool:
                x = tf.nn.max_pool2d(x, 2, 2, "SAME")
        return head(x)

    def mbv2(x):
        x = conv(x, net.stem, 3, 1 if net.hw <= SMALL_INPUT else 2, tf.nn.relu6)
        for expand, out, stride in net.layers:
            y = conv(x, expand, 1, 1, tf.nn.relu6) if expand != int(x.shape[-1]) else x
            y = dw(y, stride, tf.nn.relu6)
            y = conv(y, out, 1, 1, lambda t: t)
            x = x + y if stride == 1 and int(x.shape[-1]) == out else y
        x = conv(x, net.head, 1, 1, tf.nn.relu6)
        return head(x)

    return {"vgg": vgg, "mbv2": mbv2}[net.family], [(1, net.hw, net.hw, 3)]


_FUNCTIONS: dict[type, Callable] = {ConvSpec: _conv_function, OpProbe: _op_function, NetProbe: _net_function}
