"""A small deterministic CNN shaped like the digits demo network, for exercising the CI gate without a search run.

Layers follow search/backbones/digits.py (32x32x1 input; 3x3 convs with ReLU; stride-2 steps; one identity
connection; a depthwise 3x3 then a pointwise 1x1; global average pool; a 10-way dense layer). More channels make a
slower model, which is how the gate's tests and reliability benchmark make a regression. Weights are seeded by the
channel counts, so the same counts give the same network on every machine.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from profiler.atomic import atomic_write_bytes
from profiler.measure.model_builder import DEFAULT_CACHE_DIR, convert_function

BASE_CHANNELS = (16, 32, 64, 128)
INPUT_SHAPE = (1, 32, 32, 1)


def demo_model(channels: tuple[int, ...] = BASE_CHANNELS, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Path of the demo-like .tflite with these four stage widths, converted on first use (imports TensorFlow then)."""
    if len(channels) != len(BASE_CHANNELS) or min(channels) < 1:
        raise ValueError(f"expected {len(BASE_CHANNELS)} positive channel counts, got {channels}")
    c = tuple(int(v) for v in channels)
    key = hashlib.sha256(repr(("demo-like", c)).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"demo-{key}.tflite"
    if not path.exists():
        atomic_write_bytes(path, convert_function(_network(c, int(key, 16) % 2**32), [INPUT_SHAPE]))
    return path


def _network(c: tuple[int, ...], seed: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the converter's info lines are noise in a CI log
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        fan_in = int(np.prod(shape[:-1]))
        return rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32)

    def conv_layer(cin: int, cout: int, stride: int = 1, kernel: int = 3):
        w, b = weights(kernel, kernel, cin, cout), weights(1, cout)[0]
        return lambda x: tf.nn.relu(tf.nn.conv2d(x, w, stride, "SAME") + b)

    def depthwise_layer(ch: int):
        w, b = weights(3, 3, ch, 1), weights(1, ch)[0]
        return lambda x: tf.nn.relu(tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME") + b)

    conv1, conv2, conv3 = conv_layer(1, c[0]), conv_layer(c[0], c[1], stride=2), conv_layer(c[1], c[1])
    tail = [conv_layer(c[1], c[2], stride=2), depthwise_layer(c[2]), conv_layer(c[2], c[2], kernel=1),
            conv_layer(c[2], c[3], stride=2)]
    dense_w, dense_b = weights(c[3], 10), weights(1, 10)[0]

    def network(x):
        skip = conv2(conv1(x))
        x = conv3(skip) + skip
        for layer in tail:
            x = layer(x)
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), dense_w) + dense_b

    return network
