"""What an op costs inside a model against alone: the evidence behind pricing a whole model from one-op probes.

(a) Chains: a model of 1 op and one of 11 identical ops (small conv, larger conv, depthwise); the cost of each extra
    op in the chain against the single-op model's latency shows how much of a one-op model is the invoke overhead.
(b) Copy ops: SPLIT_V and CONCATENATION inside a model, each by difference of two models that differ by that op
    (split + add/mul + concat, add/mul + concat, split + add/mul, add/mul alone), against the same op alone.
Every model is timed on the host device, lowest median of interleaved passes.

    chrt -f 20 .venv/bin/python benchmarks/in_model_ops.py

Writes OUT/in_model_ops_host.json and prints the figures (microseconds).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from profiler.measure.devices import create_device  # noqa: E402
from profiler.measure.devices.base import BenchmarkSettings  # noqa: E402
from profiler.measure.interleaved import lowest_of_passes  # noqa: E402
from profiler.measure.model_builder import build_model, convert_function, load_tensorflow  # noqa: E402
from profiler.ops import OpProbe  # noqa: E402

CHAIN = 11


def chain_models(tf, rng) -> dict[str, tuple]:
    def conv(c: int, hw: int, k: int, depthwise: bool = False):
        def make(n: int):
            shape = (k, k, c, 1) if depthwise else (k, k, c, c)
            weights = [tf.constant(rng.normal(0, 0.3, shape).astype(np.float32)) for _ in range(n)]

            def f(x):
                for w in weights:
                    y = tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME") if depthwise else tf.nn.conv2d(x, w, 1,
                                                                                                          "SAME")
                    x = tf.nn.relu(y)
                return x
            return f, [(1, hw, hw, c)]
        return make

    return {"conv 8x8x8:8:k1": conv(8, 8, 1), "conv 16x16x32:32:k3": conv(32, 16, 3),
            "dw 8x8x16:k3": conv(16, 8, 3, depthwise=True)}


def copy_models(tf, hw: int, c: int) -> dict[str, tuple]:
    half = c // 2

    def split_ops_concat(x):
        a, b = tf.split(x, [half, c - half], axis=3)
        return tf.concat([a + 1.0, b * 2.0], axis=3)

    def ops_concat(a, b):
        return tf.concat([a + 1.0, b * 2.0], axis=3)

    def split_ops(x):
        a, b = tf.split(x, [half, c - half], axis=3)
        return a + 1.0, b * 2.0

    def ops(a, b):
        return a + 1.0, b * 2.0

    whole, halves = [(1, hw, hw, c)], [(1, hw, hw, half), (1, hw, hw, c - half)]
    return {"split+ops+concat": (split_ops_concat, whole), "ops+concat": (ops_concat, halves),
            "split+ops": (split_ops, whole), "ops": (ops, halves)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--hw", type=int, default=32, help="feature map of the copy-op models")
    p.add_argument("--channels", type=int, default=13, help="channels of the copy-op models")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()
    tf = load_tensorflow()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, Path] = {}

        def write(name: str, fn, shapes) -> None:
            paths[name] = Path(tmp) / f"{len(paths)}.tflite"
            paths[name].write_bytes(convert_function(fn, shapes))

        for name, make in chain_models(tf, rng).items():
            for n in (1, CHAIN):
                write(f"{name} x{n}", *make(n))
        for name, (fn, shapes) in copy_models(tf, args.hw, args.channels).items():
            write(name, fn, shapes)
        half = args.channels // 2
        alone = {"SPLIT_V": OpProbe("SPLIT_V", ((1, args.hw, args.hw, args.channels),), (1, args.hw, args.hw, half)),
                 "CONCATENATION": OpProbe("CONCATENATION", ((1, args.hw, args.hw, half),
                                                            (1, args.hw, args.hw, args.channels - half)),
                                          (1, args.hw, args.hw, args.channels))}
        for name, probe in alone.items():
            paths[f"{name} alone"] = build_model(probe, Path(tmp) / "probes")
        with create_device("host") as device:
            us = dict(zip(paths, (1000 * ms for ms in lowest_of_passes(device, list(paths.values()),
                                                                       BenchmarkSettings(runs=args.runs),
                                                                       args.passes))))
            info = device.info()
    report = {"device": info, "settings": vars(args) | {"out": str(args.out)}, "latency_us": us, "chains": {},
              "copy_ops": {}}
    for name in chain_models(tf, rng):
        single, chain = us[f"{name} x1"], us[f"{name} x{CHAIN}"]
        per_op = (chain - single) / (CHAIN - 1)
        report["chains"][name] = {"alone_us": single, "per_op_in_chain_us": per_op, "discount_us": single - per_op}
        print(f"{name:20s} alone {single:8.2f} us, each further op in a chain of {CHAIN} {per_op:8.2f} us: "
              f"{single - per_op:5.2f} us less")
    in_model = {"SPLIT_V": (us["split+ops+concat"] - us["ops+concat"], us["split+ops"] - us["ops"]),
                "CONCATENATION": (us["split+ops+concat"] - us["split+ops"], us["ops+concat"] - us["ops"])}
    for name, (a, b) in in_model.items():
        report["copy_ops"][name] = {"alone_us": us[f"{name} alone"], "in_model_us": [a, b]}
        print(f"{name:20s} alone {us[f'{name} alone']:8.2f} us, inside a model {a:6.2f} / {b:6.2f} us "
              f"(two differences of models)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"in_model_ops_{info['name']}.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
